#!/usr/bin/env python
"""Dashboard load time: the overview at /ui in headless Chromium, on the query benchmark's database.

    python bench/ui_load.py [--records 10000000] [--db-dir /tmp/qdb] [--loads 20]

Builds or reuses the database of `bench/queries.py` (same cache, same `--db-dir`), runs
`spanmeter serve` on it (auth off, pinned to one CPU; the browser gets the other), and opens
`/ui/` `--loads` times, each in a fresh browser context (no HTTP cache). A load is timed from the
navigation to the overview fully drawn: both charts' bars, the top customers' and top models'
tables and the attention cards. It prints p50 / p95 / max of that time and each API call the
page made (its slowest time over the loads), and checks against the goal (p50 under 1 s).
Needs Playwright and the system's `chromium` (as the browser tests do).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import Server, free_port, plan_cpus, spanmeter_command, spanmeter_version
from queries import ensure_db, percentile, server_config

from spanmeter.store.sqlite import SQLiteStore

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
DRAWN = ("#cost-chart rect.bar", "#tokens-chart rect.bar", "#top-customers table", "#top-models table", "#attention .card")
GOAL_MS = 1000.0


def load_once(browser: Any, url: str, calls: dict[str, list[float]]) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    for selector in DRAWN:
        page.wait_for_selector(selector, timeout=60_000)
    elapsed = (time.perf_counter() - t0) * 1000
    # The browser's own timings (Resource Timing): each call from its start to its last byte, and
    # when the scripts had loaded (first call) and the last answer had arrived.
    first_call, last_answer = float("inf"), 0.0
    for name, start, end in page.evaluate(
        "performance.getEntriesByType('resource').map(e => [e.name, e.startTime, e.responseEnd])"
    ):
        if "/api/" in name:
            calls.setdefault(_call_name(name), []).append(end - start)
            first_call, last_answer = min(first_call, start), max(last_answer, end)
    calls.setdefault(" page loaded: first API call starts", []).append(first_call)
    calls.setdefault(" last API answer received", []).append(last_answer)
    context.close()
    return elapsed


def _call_name(url: str) -> str:
    path = url.split("//", 1)[1].split("/", 1)[1]
    group = "?group_by=" + path.split("group_by=")[1].split("&")[0] if "group_by=" in path else ""
    return "/" + path.split("?")[0] + group


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=lambda s: int(float(s)), default=10_000_000)
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp/spanmeter-querydb"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--server-cpu", type=int, default=None)
    parser.add_argument("--client-cpu", type=int, default=None)
    args = parser.parse_args()
    server_cpu, _ = plan_cpus(args.server_cpu, args.client_cpu)
    from playwright.sync_api import sync_playwright

    path, info = ensure_db(args.db_dir, args.records, args.seed, False)
    SQLiteStore(path).migrate()  # as serve would, first, untimed
    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-ui-load-"))
    grpc_port, http_port = free_port(), free_port()
    config = server_config(workdir, path, grpc_port, http_port)
    server = Server("spanmeter", [*spanmeter_command(), "serve", "-c", str(config)], workdir, grpc_port, http_port, server_cpu)
    server.start(timeout=600)
    loads: list[float] = []
    calls: dict[str, list[float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            url = f"http://127.0.0.1:{http_port}/ui/"
            first = load_once(browser, url, {})  # the server's first answers: nothing remembered yet
            for _ in range(args.loads):
                loads.append(load_once(browser, url, calls))
            browser.close()
    finally:
        server.stop()
    print(f"\n== overview at /ui, {info['records']:,} records: spanmeter {spanmeter_version()}")
    p50 = percentile(loads, 50)
    print(f"first load {first:.0f} ms; {len(loads)} loads: p50 {p50:.0f} ms, p95 {percentile(loads, 95):.0f} ms,"
          f" max {max(loads):.0f} ms  (goal p50 < {GOAL_MS:.0f} ms: {'PASS' if p50 < GOAL_MS else 'FAIL'})")  # fmt: skip
    print("API calls of a load (ms over the loads; the first two rows: ms since navigation):")
    for name, times in sorted(calls.items(), key=lambda item: -percentile(item[1], 50)):
        print(f"  {name:<60} p50 {percentile(times, 50):7.1f}  max {max(times):7.1f}")
    return 0 if p50 < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
