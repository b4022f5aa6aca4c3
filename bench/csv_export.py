#!/usr/bin/env python
"""CSV export benchmark: `spanmeter export csv` over a store of N records, time and peak memory.

    python bench/csv_export.py [--records 1000000] [--db-dir /tmp/spanmeter-bench-csv] [--rebuild] [--jobs N]

1. Builds (or reuses from `--db-dir`) a SQLite store of N records through the store's own writer
   (`SQLiteStore.write`, batches of 10,000; no OTLP): 60 % LLM calls, 30 % product events (six
   families, 40 products), 10 % meter records, over ~2,000 accounts and ~20,000 developers, a
   tenth of them on free-mail addresses (no account), in occurred_at order over 90 days.
2. Runs `spanmeter export csv` as a subprocess, output to a file: the actions of every record
   (`--record-kind event --record-kind llm --record-kind meter`: one row each), then the accounts.
   Reports wall time, records/s, the export's CPU time (its processes together: records per CPU
   second), the peak RSS of its largest process (getrusage) and of all its processes together
   (`--jobs`: sampled from /proc every 50 ms, shared pages counted in each), and reads the actions
   file back to check its row count. Goals: all processes together under 200 MB, more than
   100,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from spanmeter.record import Product, UsageRecord, new_record_id
from spanmeter.store.sqlite import SQLiteStore

BATCH = 10_000
DAY_NS = 86_400 * 10**9
FAMILIES = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")
FREE = ("gmail.com", "outlook.com", "yahoo.com", "proton.me")


def generate(n: int, seed: int) -> Iterator[list[UsageRecord]]:
    rng = random.Random(seed)
    end = time.time_ns()
    start = end - 90 * DAY_NS
    domains = [f"company{i}.example" for i in range(2_000)]
    products = [Product(f"p{i}", f"Product {i}", "library", "1.0", "sdk") for i in range(40)]
    batch: list[UsageRecord] = []
    for i in range(n):
        developer = rng.randrange(20_000)
        domain = FREE[developer % 4] if developer % 10 == 0 else domains[developer % len(domains)]
        email = f"dev{developer}@{domain}"
        at = start + (end - start) * i // n
        roll = rng.random()
        common = {"idempotency_key": f"k{i}", "occurred_at": at, "id": new_record_id(), "received_at": at,
                  "customer_id": f"cust-{developer % 2_000}", "user_id": f"dev{developer}", "email": email}
        if roll < 0.6:
            tokens = rng.randrange(100, 5_000)
            record = UsageRecord(kind="llm", type="chat", provider="openai", request_model="gpt-4o",
                                 response_model="gpt-4o", input_tokens=tokens, output_tokens=tokens // 4,
                                 total_tokens=tokens + tokens // 4, cost_usd=Decimal(tokens) / 1_000_000,
                                 cost_source="computed", **common)
        elif roll < 0.9:
            record = UsageRecord(kind="event", type="product_event", event_name=f"action_{rng.randrange(12)}",
                                 event_family=FAMILIES[rng.randrange(6)], product=products[rng.randrange(40)],
                                 source="web", campaign_id="c1", **common)
        else:
            record = UsageRecord(kind="meter", type="api_calls", meter="api_calls",
                                 quantity=Decimal(rng.randrange(1, 100)), **common)
        batch.append(record)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def build(path: Path, n: int, seed: int) -> None:
    store = SQLiteStore(path, synchronous="OFF")
    await store.start()
    try:
        pending: asyncio.Future[object] | None = None
        for batch in generate(n, seed):
            task = asyncio.ensure_future(store.write(batch))
            await asyncio.sleep(0)  # the writer commits this batch while the next is made
            if pending is not None:
                await pending
            pending = task
        if pending is not None:
            await pending
    finally:
        await store.close()


def ensure_db(db_dir: Path, n: int, rebuild: bool) -> Path:
    db_dir.mkdir(parents=True, exist_ok=True)
    path = db_dir / f"csv-{n}.db"
    if rebuild or not path.exists():
        for stale in db_dir.glob(f"csv-{n}.db*"):
            stale.unlink()
        started = time.monotonic()
        print(f"building {path}: {n:,} records through SQLiteStore.write, batches of {BATCH:,}", flush=True)
        asyncio.run(build(path, n, seed=17))
        print(f"  built in {time.monotonic() - started:.0f} s", flush=True)
    return path


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of `pid` and its children (VmRSS, KiB): the export's processes together.
    An upper bound: pages a forked child still shares with its parent count twice."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Pid", "0")) == pid or int(fields.get("PPid", "0")) == pid:
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


def run_export(config: Path, out: Path, *args: str) -> tuple[float, float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS of the largest export process and of all of them
    together in MB, what it printed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    # The bench's environment holds the test extras, whose logfire registers a pydantic plugin
    # that imports all of logfire when spanmeter builds its first config model (0.4-1 s of start-up
    # a `pip install spanmeter` does not have): measured without it.
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "logfire-plugin"}
    export = subprocess.Popen(
        [sys.executable, "-m", "spanmeter", "export", "csv", "-c", str(config), "--out", str(out), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    together = 0
    while export.poll() is None:
        together = max(together, _tree_rss_kb(export.pid))
        time.sleep(0.05)
    _, said = export.communicate()
    if export.returncode:
        raise SystemExit(f"spanmeter export failed ({export.returncode}): {said}")
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss (KiB on Linux) is the largest child's so far: each export process is at most this
    return seconds, cpu, after.ru_maxrss / 1024, together / 1024, said.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp/spanmeter-bench-csv"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--jobs", type=int, help="spanmeter export csv --jobs (default: its own)")
    args = parser.parse_args()
    db = ensure_db(args.db_dir, args.records, args.rebuild)
    config = args.db_dir / "spanmeter.yaml"
    config.write_text(f"storage:\n  sqlite:\n    path: {db}\n")
    failed = False
    for kind, extra in (("actions", ["--record-kind", "event", "--record-kind", "llm", "--record-kind", "meter"]),
                        ("accounts", [])):
        out = args.db_dir / f"{kind}.csv"
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        seconds, cpu, rss_mb, together_mb, said = run_export(config, out, "--kind", kind, *extra, *jobs)
        with out.open(newline="", encoding="utf-8") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        rate = args.records / seconds  # records read from the store per second of wall time
        per_cpu = args.records / cpu  # per CPU second: what a machine of its own would reach
        ok = together_mb < 200 and (kind == "accounts" or (rate > 100_000 and rows == args.records))
        failed |= not ok
        print(f"{kind:8}  {args.records:,} records -> {rows:,} rows  {seconds:6.1f} s wall  {rate:9,.0f} records/s"
              f"  {cpu:5.1f} s CPU  {per_cpu:9,.0f} records/CPU-s  peak RSS {rss_mb:4.0f} MB ({together_mb:.0f} MB all)"
              f"  {out.stat().st_size / 1e6:5.0f} MB file  {'ok' if ok else 'OVER GOAL'}")
        print(f"          spanmeter: {said}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
