"""The overview's unknown-model and rejected-span counts are stored: a restart of the collector
does not reset them (Prometheus' counters, per process, start again at 0), and a request's
rejected spans are stored with its records, in one transaction: both or neither. On each backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from spanmeter.record import UsageRecord
from spanmeter.store.port import AttentionCounts, Store
from tests.conftest import RunningCollector, make_config, running_collector
from tests.otlp_helpers import i, json_request, llm_raw_attrs, raw_span, s
from tests.store.backends import undo_migration
from tests.test_store_failures import set_page_limit

ATTENTION = "/api/v1/usage/attention"
MIGRATION = {"sqlite": "m014_attention_counts", "postgres": "m006_attention_counts"}


def send(collector: RunningCollector, spans: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        f"{collector.http_url}/v1/traces",
        content=json_request(spans),
        headers={"content-type": "application/json"},
        timeout=30,
    )


def test_counts_survive_a_restart(tmp_path: Path, storage: dict[str, Any]) -> None:
    config = make_config(tmp_path, storage=storage)
    with running_collector(config) as collector:
        assert httpx.get(collector.http_url + ATTENTION).json() == {"unknownModelRecords": 0, "rejectedSpans": 0}
        response = send(collector, [
            raw_span(1, llm_raw_attrs()),  # priced
            raw_span(2, llm_raw_attrs(**{"gen_ai.request.model": s("no-such-model-v9")})),  # stored, no price
            raw_span(3, llm_raw_attrs(**{"gen_ai.usage.input_tokens": i(-5)})),  # refused
        ])  # fmt: skip
        assert int(response.json()["partialSuccess"]["rejectedSpans"]) == 1
        send(collector, [raw_span(4, llm_raw_attrs(**{"gen_ai.usage.output_tokens": s("x")}))])
        assert httpx.get(collector.http_url + ATTENTION).json() == {"unknownModelRecords": 1, "rejectedSpans": 2}
        assert collector.metric("spanmeter_rejected_spans_total") == 2
    with running_collector(config) as collector:  # the same database, a new process's counters
        assert collector.metric("spanmeter_rejected_spans_total") == 0
        assert httpx.get(collector.http_url + ATTENTION).json() == {"unknownModelRecords": 1, "rejectedSpans": 2}
        # a duplicate of the unknown-model record is not counted again
        send(collector, [raw_span(2, llm_raw_attrs(**{"gen_ai.request.model": s("no-such-model-v9")}))])
        assert httpx.get(collector.http_url + ATTENTION).json() == {"unknownModelRecords": 1, "rejectedSpans": 2}


def test_unknown_models_stored_before_the_counts_are_counted_once(new_store: Callable[[], Store]) -> None:
    """A database written before the counts existed: its migration counts the stored records."""
    stored = [("a", "unknown"), ("a", "unknown"), ("a", "computed"), ("b", "unknown")]

    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write([
            UsageRecord(idempotency_key=f"k{n}", kind="llm", type="chat", occurred_at=1, workspace=workspace,
                        id=f"id{n}", cost_source=source, status="success")
            for n, (workspace, source) in enumerate(stored)
        ])  # fmt: skip
        await store.close()
        return store

    undo_migration(asyncio.run(write()), MIGRATION, "attention_counts")
    store = new_store()
    store.migrate()
    assert isinstance(store, AttentionCounts)
    assert store.attention_counts("a") == {"unknown_model": 2, "rejected_spans": 0}
    assert store.attention_counts("b") == {"unknown_model": 1, "rejected_spans": 0}
    assert store.attention_counts("c") == {"unknown_model": 0, "rejected_spans": 0}


def run_sql(storage: dict[str, Any], *statements: str) -> None:
    """Statements on the collector's database, from a connection of the test's own."""
    if "postgres" in storage:
        import psycopg

        with psycopg.connect(storage["postgres"]["dsn"], autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # the test's own literal SQL
        return
    conn = sqlite3.connect(storage["sqlite"]["path"], isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


FAIL_COUNTING = {  # the rejected-span count's write fails: after the request's records are inserted
    "sqlite": (
        (
            "CREATE TRIGGER fail_counting BEFORE INSERT ON attention_counts WHEN NEW.name = 'rejected_spans'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ),
    ),
    "postgres": (
        (
            "CREATE FUNCTION fail_counting() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
        ),
        (
            "CREATE TRIGGER fail_counting BEFORE INSERT ON attention_counts FOR EACH ROW"
            " WHEN (NEW.name = 'rejected_spans') EXECUTE FUNCTION fail_counting()"
        ),
    ),
}
COUNT_AGAIN = {"sqlite": ("DROP TRIGGER fail_counting",), "postgres": ("DROP TRIGGER fail_counting ON attention_counts",)}


def test_a_requests_records_and_rejected_spans_are_stored_together_or_not_at_all(
    tmp_path: Path, storage: dict[str, Any]
) -> None:
    backend = next(iter(storage))
    mixed = [
        raw_span(1, llm_raw_attrs()),
        raw_span(2, llm_raw_attrs(**{"gen_ai.usage.input_tokens": i(-5)})),  # refused
        raw_span(3, llm_raw_attrs(**{"gen_ai.usage.output_tokens": s("x")})),  # refused
        raw_span(4, llm_raw_attrs()),
    ]
    with running_collector(make_config(tmp_path, storage=storage)) as collector:
        run_sql(storage, *FAIL_COUNTING[backend])
        failed = send(collector, mixed)
        assert failed.status_code == 503 and "retry later" in failed.json()["message"]
        assert collector.records() == []  # the records went with the count that failed
        assert httpx.get(collector.http_url + ATTENTION).json()["rejectedSpans"] == 0
        run_sql(storage, *COUNT_AGAIN[backend])
        response = send(collector, mixed)  # the sender's retry: both, once
        assert response.status_code == 200 and int(response.json()["partialSuccess"]["rejectedSpans"]) == 2
        assert len(collector.records()) == 2
        assert httpx.get(collector.http_url + ATTENTION).json() == {"unknownModelRecords": 0, "rejectedSpans": 2}


# SQLite-only: a full disk (SQLite's page limit, as in test_store_failures.py) in the records' transaction.
def test_a_full_disk_stores_neither_the_records_nor_their_rejected_spans(tmp_path: Path) -> None:
    pad = {"usage.meta.pad": s("x" * 4000)}
    mixed = [raw_span(n, llm_raw_attrs(**pad)) for n in range(1, 40)]
    mixed.append(raw_span(99, llm_raw_attrs(**{"gen_ai.usage.input_tokens": i(-5)})))
    with running_collector(make_config(tmp_path)) as collector:
        store = collector.collector.store
        store.transaction(lambda conn: set_page_limit(conn, None))
        assert send(collector, mixed).status_code == 503
        assert collector.records() == []
        assert httpx.get(collector.http_url + ATTENTION).json()["rejectedSpans"] == 0
        store.transaction(lambda conn: set_page_limit(conn, 1_073_741_823))
        assert send(collector, mixed).status_code == 200
        assert len(collector.records()) == 39
        assert httpx.get(collector.http_url + ATTENTION).json()["rejectedSpans"] == 1
