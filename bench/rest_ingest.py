#!/usr/bin/env python
"""REST ingest benchmark: tokens& `POST /api/usage/track/batch` (500 events per request) against
OTLP/HTTP `POST /v1/traces` (512 GenAI spans per request, protobuf), in the same run.

    python bench/rest_ingest.py [--seconds 10] [--rounds 2] [--concurrency 4]

Each run starts a fresh `spanmeter serve` (its own SQLite file) pinned to one core, the load
generator on the other; the two kinds of run alternate, `--rounds` times each, and the median
items/s (events or spans) of each kind is printed with their ratio. Both are sent with the same
httpx client; every request must be answered 2xx and every item stored (checked in the database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import otlpgen
from ingest import make_server, plan_cpus, spanmeter_version

EVENTS_PER_BATCH = 500
SPANS_PER_REQUEST = 512
FAMILIES = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")


def tokensand_batches(count: int) -> list[bytes]:
    """`count` batch bodies of real-shaped product events, each with its own idempotency key."""
    bodies = []
    for b in range(count):
        events = [
            {
                "event_name": ("API_CALL", "SDK_INIT", "DOCS_OPEN", "FIRST_API_CALL")[i % 4],
                "developer_id": f"dev_{(b * 7 + i) % 5000}",
                "email": f"dev{i % 5000}@company{i % 300}.com",
                "event_family": FAMILIES[i % 6],
                "product": {"id": f"prod_{i % 12}", "name": "Payments API", "type": "API", "version": "2"},
                "account_domain": f"www.company{i % 300}.com",
                "source": "SDK",
                "campaignId": "launch-week",
                "occurredAt": "2026-11-23T12:00:00Z",
                "idempotencyKey": f"bench-{b}-{i}",
            }
            for i in range(EVENTS_PER_BATCH)
        ]
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


async def drive(url: str, bodies: list[bytes], content_type: str, concurrency: int, seconds: float) -> tuple[int, float]:
    """(requests answered 2xx, seconds) sending `bodies` in order until they or the time run out."""
    position = ok = 0
    headers = {"content-type": content_type}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        await client.post(url, content=bodies[0], headers=headers)  # warm-up (stored too)
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal position, ok
            while position < len(bodies) - 1 and time.perf_counter() < deadline:
                position += 1
                answer = await client.post(url, content=bodies[position], headers=headers)
                if answer.status_code // 100 != 2:
                    raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")
                ok += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, time.perf_counter() - started


def run(kind: str, bodies: list[bytes], cpu: int | None, tmp: Path, n: int, args: argparse.Namespace) -> float:
    server = make_server("spanmeter", tmp / f"{kind}-{n}", cpu, "raw")
    server.start()
    try:
        if kind == "tokensand":
            url, content_type, per = "/api/usage/track/batch", "application/json", EVENTS_PER_BATCH
        else:
            url, content_type, per = "/v1/traces", "application/x-protobuf", SPANS_PER_REQUEST
        ok, elapsed = asyncio.run(
            drive(f"http://127.0.0.1:{server.http_port}{url}", bodies, content_type, args.concurrency, args.seconds)
        )
    finally:
        server.stop()
    with sqlite3.connect(server.workdir / "spanmeter.db") as db:
        kind_name = "event" if kind == "tokensand" else "llm"
        stored = db.execute("SELECT COUNT(*) FROM records WHERE kind = ?", [kind_name]).fetchone()[0]
    if kind == "tokensand" and stored != (ok + 1) * per:
        raise RuntimeError(f"{kind}: {stored} records stored for {(ok + 1) * per} events sent")
    rate = ok * per / elapsed
    print(f"  {kind:10} {ok:5d} requests x {per} in {elapsed:5.1f} s: {rate:9.0f} items/s  ({stored} stored)")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each kind, alternating (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--requests", type=int, default=200, help="request bodies prepared per kind (default 200)")
    args = parser.parse_args(argv)

    server_cpu, _ = plan_cpus(None, None)
    print(f"spanmeter {spanmeter_version()}; {args.rounds} x {args.seconds:.0f} s per kind, concurrency {args.concurrency}")
    pool = otlpgen.make_spans(args.requests * SPANS_PER_REQUEST)
    otlp_bodies = otlpgen.make_requests(pool, 0, args.requests, SPANS_PER_REQUEST)
    rest_bodies = tokensand_batches(args.requests)
    rates: dict[str, list[float]] = {"tokensand": [], "otlp": []}
    with tempfile.TemporaryDirectory(prefix="spanmeter-rest-bench-") as tmp:
        for n in range(args.rounds):
            rates["otlp"].append(run("otlp", otlp_bodies, server_cpu, Path(tmp), n, args))
            rates["tokensand"].append(run("tokensand", rest_bodies, server_cpu, Path(tmp), n, args))
    medians: dict[str, Any] = {kind: statistics.median(values) for kind, values in rates.items()}
    print(
        f"median: tokens& track/batch of {EVENTS_PER_BATCH}: {medians['tokensand']:.0f} events/s; "
        f"OTLP/HTTP {SPANS_PER_REQUEST} spans/request: {medians['otlp']:.0f} spans/s; "
        f"ratio {medians['tokensand'] / medians['otlp']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
