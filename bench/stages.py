#!/usr/bin/env python
"""Where an ingested span's CPU goes: spanmeter's stages beside the bare minimum's, in one process.

    python bench/stages.py [--batch 512] [--requests 200] [--cpu 0] [--json FILE]

`bench/ingest.py` tells how fast each receiver is; this tells why. Both run on the same
pre-serialised requests (bench/otlpgen.py), pinned to one CPU, without servers or threads:

- spanmeter: parse (`ParseFromString`), convert (`convert_traces`: the fast path or the general
  one), record ids, price (`Pricer.price`), rows (`record_to_row` + the key hash), insert (the
  writer's `_insert`: INSERT OR IGNORE of the rows into a database with spanmeter's schema and
  indexes, and the daily rollups, one transaction per request), and the same requests once more
  end to end through `Ingest.export_traces` on a real `SQLiteStore` (writer thread included,
  4 requests in flight) as a check that the stages add up. Then, for comparison, the insert stage
  once more into a database without the records indexes: what those indexes cost.
- bare: parse, extract (bench/baseline.py's loop), insert (its 16-column table, one UNIQUE index).

Each figure is process CPU time per span (microseconds), so other load on the machine matters
less than for wall-clock rates; the insert stages grow with the table, so compare runs of the
same `--requests`. See bench/README.md ("Where the time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baseline
import otlpgen
from ingest import cpu_model, spanmeter_version
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanmeter.convert.spans import Converted, ConvertOptions, convert_traces
from spanmeter.metrics import Metrics
from spanmeter.pricing import Pricer
from spanmeter.receivers.ingest import Ingest
from spanmeter.record import new_record_id
from spanmeter.store.schema import record_to_row
from spanmeter.store.sqlite import SQLiteStore, connect
from spanmeter.store.sqlite.key_hash import key_hash
from spanmeter.store.write_queue import Job


def timed(results: dict[str, float], name: str, spans: int, fn: Callable[[], Any]) -> Any:
    started = time.process_time()
    value = fn()
    results[name] = (time.process_time() - started) / spans * 1e6
    return value


def spanmeter_stages(bodies: list[bytes], spans: int, workdir: Path) -> tuple[dict[str, float], list[Converted]]:
    out: dict[str, float] = {}
    options, pricer = ConvertOptions(), Pricer()

    def parse() -> list[ExportTraceServiceRequest]:
        requests = []
        for body in bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            requests.append(request)
        return requests

    requests = timed(out, "parse", spans, parse)
    converted = timed(out, "convert", spans, lambda: [convert_traces(r, options, time.time_ns()) for r in requests])

    def ids() -> None:
        for c in converted:
            for record, record_id in zip(c.records, new_record_id.many(len(c.records)), strict=True):
                record.id = record_id

    timed(out, "record ids", spans, ids)
    timed(out, "price", spans, lambda: [pricer.price(r) for c in converted for r in c.records])
    timed(out, "rows + key hash", spans, lambda: [
        record_to_row(r) + (key_hash(r.workspace, r.idempotency_key),) for c in converted for r in c.records
    ])  # fmt: skip

    rows_again = out["rows + key hash"]  # the writer builds the rows again: not counted twice
    out["insert + rollups"] = insert_cpu(converted, workdir / "stages.db", spans) - rows_again
    return out, converted


def insert_cpu(converted: list[Converted], path: Path, spans: int, *, drop_indexes: bool = False) -> float:
    """CPU µs per span of the writer's own transaction body (`_insert`, rows and rollups), one
    transaction per request, into a new database; `drop_indexes`: without the records indexes."""
    store = SQLiteStore(path)
    store.migrate()
    conn = connect(store.path)
    conn.execute(f"PRAGMA synchronous={store.synchronous}")
    conn.execute(f"PRAGMA cache_size=-{store.cache_mb * 1024}")
    if drop_indexes:
        indexes = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL")
        for (name,) in indexes.fetchall():
            conn.execute(f"DROP INDEX {name}")
    loop = asyncio.new_event_loop()
    started = time.process_time()
    for c in converted:
        conn.execute("BEGIN IMMEDIATE")
        store.writer._insert(conn, [Job(c.records, loop, loop.create_future())])
        conn.execute("COMMIT")
    used = time.process_time() - started
    conn.close()
    loop.close()
    return used / spans * 1e6


def end_to_end(bodies: list[bytes], spans: int, workdir: Path) -> float:
    async def run() -> float:
        store = SQLiteStore(workdir / "end_to_end.db")
        await store.start()
        ingest = Ingest(store, Pricer(), ConvertOptions(), Metrics())
        pending = list(reversed(bodies))

        async def worker() -> None:
            while pending:
                request = ExportTraceServiceRequest()
                request.ParseFromString(pending.pop())
                await ingest.export_traces(request, "grpc")

        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(4)))
        used = time.process_time() - started
        await store.close()
        return used / spans * 1e6

    return asyncio.run(run())


def bare_stages(bodies: list[bytes], spans: int, workdir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    handler = baseline.Handler("bare", str(workdir / "bare.db"))
    assert handler.conn is not None
    conn = handler.conn
    requests = timed(out, "parse", spans, lambda: [baseline.parse(b) for b in bodies])
    rows = timed(out, "extract", spans, lambda: [baseline.extract(r) for r in requests])

    def insert() -> None:
        for request_rows in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(baseline.INSERT, request_rows)
            conn.execute("COMMIT")

    timed(out, "insert", spans, insert)
    handler.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--requests", type=int, default=200, help="requests (default 200)")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin this process to (default 0; -1: none)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    print(f"spanmeter: {spanmeter_version()}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; this process on CPU {args.cpu}")
    spans = args.batch * args.requests
    pool = otlpgen.make_spans(spans)
    bodies = otlpgen.make_requests(pool, 0, args.requests, args.batch)
    with tempfile.TemporaryDirectory(prefix="spanmeter-stages-") as tmp:
        workdir = Path(tmp)
        ours, converted = spanmeter_stages(bodies, spans, workdir)
        unindexed = insert_cpu(converted, workdir / "unindexed.db", spans, drop_indexes=True) - ours["rows + key hash"]
        whole = end_to_end(bodies, spans, workdir)
        bare = bare_stages(bodies, spans, workdir)
    print(f"\n{args.requests} requests of {args.batch} spans ({spans:,} spans), CPU microseconds per span:\n")
    print("| spanmeter stage | µs/span | bare stage | µs/span |")
    print("|---|---:|---|---:|")
    bare_items = list(bare.items())
    for i, (name, value) in enumerate(ours.items()):
        other = f"| {bare_items[i][0]} | {bare_items[i][1]:.1f} |" if i < len(bare_items) else "| | |"
        print(f"| {name} | {value:.1f} {other}")
    total, bare_total = sum(ours.values()), sum(bare.values())
    print(f"| **sum of stages** | **{total:.1f}** | **sum** | **{bare_total:.1f}** |")
    print(f"| end to end (Ingest + writer thread) | {whole:.1f} | | |")
    print(f"\nbare / spanmeter: {bare_total / total:.2f} (stages), {bare_total / whole:.2f} (end to end)")
    print(f"insert + rollups with every records index dropped (what the indexes cost; not in the sum): {unindexed:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "requests": args.requests, "spanmeter": ours,
                                         "end_to_end": whole, "bare": bare,
                                         "insert_without_indexes": unindexed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
