"""Several `spanmeter serve` processes on one PostgreSQL database: every guarantee of one kept."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading
from pathlib import Path

import psycopg

from tests.exporters.harness import FAST, assert_each_once, export, numbered_llm_spans, wait_for
from tests.exporters.test_webhook import SECRET, WEBHOOK_CASE
from tests.fakes.rest_target import RestTarget
from tests.postgres_server import PostgresServer
from tests.test_crash import free_port, start_server

SPANS = 10_000


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_two_instances_store_each_span_once_and_deliver_each_record_once_through_a_kill(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """The same 10,000 spans sent to two instances at once: 10,000 records. A webhook exporter on
    both delivers each exactly once, though the instance sending is killed (SIGKILL) while its
    request is in flight: the other takes the exporter over."""
    dsn = postgres.new_database()
    target = RestTarget(check=WEBHOOK_CASE.check).start()
    exporters = {"webhook/billing": {"endpoint": f"{target.url}/hooks/usage", "secret": SECRET, "max_batch": 500,
                                     **FAST}}
    service = {"pipelines": {"usage": {"exporters": ["webhook/billing"]}}}
    log = (tmp_path / "serve.log").open("ab")
    ports = [free_port(), free_port()]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        target.hold_after(4)
        with concurrent.futures.ThreadPoolExecutor(2) as starting:  # both at once: one applies the migrations
            for proc in starting.map(
                lambda port: start_server(tmp_path, port, service=service, exporters=exporters, stderr=log.fileno(),
                                          storage={"postgres": {"dsn": dsn}}),
                ports,
            ):
                procs[proc.pid] = proc
        spans = numbered_llm_spans(SPANS)
        chunks = [spans[i : i + 1000] for i in range(0, SPANS, 1000)]
        senders = [
            threading.Thread(target=lambda port=port: [export(f"http://127.0.0.1:{port}", c) for c in chunks])
            for port in ports
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
        assert count(dsn, "SELECT COUNT(*) FROM records") == SPANS
        assert count(dsn, "SELECT COUNT(DISTINCT idempotency_key) FROM records") == SPANS

        assert target.holding.wait(60), "no instance reached the held request"
        owner = psycopg.connect(dsn).execute("SELECT lease_owner FROM exporter_positions").fetchone()
        assert owner is not None and owner[0] is not None
        sending = int(owner[0].rsplit("/", 1)[1])  # the lease owner names its process (store/outbox.py)
        os.kill(sending, signal.SIGKILL)
        procs.pop(sending).wait(10)
        target.release()  # the killed instance's request is dropped: not accepted
        assert len(target.counts(WEBHOOK_CASE.record_ids)) < SPANS  # killed in the middle of delivering
        wait_for(lambda: len(target.counts(WEBHOOK_CASE.record_ids)) >= SPANS, what="every record from the other")
        [(_, survivor)] = procs.items()
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(20) == 0
        procs.clear()
        assert_each_once(target, WEBHOOK_CASE, SPANS)
    except BaseException:
        log.flush()
        print((tmp_path / "serve.log").read_text(errors="replace")[-4000:])  # shown by pytest on failure
        raise
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(10)
        log.close()
        target.stop()
