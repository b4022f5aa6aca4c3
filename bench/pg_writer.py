#!/usr/bin/env python
"""The PostgreSQL writer's cost per transaction: its own CPU time and the transaction's latency.

    python bench/pg_writer.py [--sizes 1,8,512] [--seconds 3] [--pg-dsn DSN]

One thread writes transactions of N new records each (`records.write`, as the writer thread
does: BEGIN, the write lock, the INSERT, the rollups' writes, COMMIT) on a throwaway server
(tests/postgres_server.py, unless `--pg-dsn`) into a fresh schema, the fast way (every key new:
one pipelined round trip) and the careful way (`ON CONFLICT DO NOTHING`, as after duplicates).
The records are spans of bench/otlpgen.py converted and priced by spanmeter, each transaction's
with keys of their own. It prints per case the median and p90 latency and the writer thread's
CPU time (`time.thread_time`: what other load on the machine disturbs least) per transaction
and per record. See bench/README.md ("PostgreSQL").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import otlpgen
from ingest import postgres_databases, spanmeter_version
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanmeter.convert.spans import ConvertOptions, convert_traces
from spanmeter.pricing import Pricer
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.postgres import records
from spanmeter.store.postgres.connection import SqliteLike, connect
from spanmeter.store.postgres.migrations import migrate


def sample_records(count: int) -> list[UsageRecord]:
    pool = otlpgen.make_spans(count)
    out: list[UsageRecord] = []
    pricer = Pricer()
    for body in otlpgen.make_requests(pool, 0, max(1, count // 64), 64):
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for record in convert_traces(request, ConvertOptions(), time.time_ns()).records:
            pricer.price(record)
            out.append(record)
    return out


def run_case(db: SqliteLike, sample: list[UsageRecord], size: int, seconds: float, *, expect_new: bool,
             serial: list[int]) -> tuple[int, list[float], float]:
    """Transactions of `size` new records for about `seconds`: (count, latencies s, thread CPU s)."""
    latencies: list[float] = []
    cpu = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(latencies) < 5:
        serial[0] += 1
        batch = [
            dataclasses.replace(sample[(serial[0] * size + i) % len(sample)], id=record_id,
                                idempotency_key=f"bench-{serial[0]}-{i}")
            for i, record_id in enumerate(new_record_id.many(size))
        ]
        cpu_started, started = time.thread_time(), time.perf_counter()
        [result] = records.write(db, [batch], expect_new=expect_new)
        latencies.append(time.perf_counter() - started)
        cpu += time.thread_time() - cpu_started
        assert len(result.inserted) == size, result
    return len(latencies), latencies, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,8,512", help="records per transaction (default 1,8,512)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per case (default 3)")
    parser.add_argument("--pg-dsn", help="an existing database (default: a throwaway server)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"spanmeter: {spanmeter_version()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sample = sample_records(2048)
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(postgres_databases(args.pg_dsn))()
        db = SqliteLike(connect(dsn, 5.0))
        stack.callback(db.close)
        migrate(db)
        serial = [0]
        run_case(db, sample, 8, 0.5, expect_new=True, serial=serial)  # warm up: caches, the server's plans
        print("\n| records/transaction | way | transactions | latency median / p90 ms | writer CPU ms/transaction"
              " | CPU µs/record |")
        print("|---:|---|---:|---:|---:|---:|")
        for size in sizes:
            for expect_new, way in ((True, "fast"), (False, "careful")):
                count, latencies, cpu = run_case(db, sample, size, args.seconds, expect_new=expect_new, serial=serial)
                p90 = statistics.quantiles(latencies, n=10)[-1]
                print(f"| {size} | {way} | {count} | {statistics.median(latencies) * 1e3:.2f} / {p90 * 1e3:.2f}"
                      f" | {cpu / count * 1e3:.2f} | {cpu / count / size * 1e6:.0f} |")
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
