"""The overview's unknown-model and rejected-span counts are stored: a restart of the collector
does not reset them (Prometheus' counters, per process, start again at 0)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from spanmeter.store.sqlite import SQLiteStore
from tests.conftest import RunningCollector, make_config, running_collector
from tests.otlp_helpers import i, json_request, llm_raw_attrs, raw_span, s

ATTENTION = "/api/v1/usage/attention"


def send(collector: RunningCollector, spans: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        f"{collector.http_url}/v1/traces",
        content=json_request(spans),
        headers={"content-type": "application/json"},
        timeout=30,
    )


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
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


def test_unknown_models_stored_before_the_counts_are_counted_once(tmp_path: Path) -> None:
    """A database written before the counts existed: its migration counts the stored records."""
    path = tmp_path / "spanmeter.db"
    SQLiteStore(path).migrate()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE attention_counts")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm014_attention_counts'")
    columns = "idempotency_key, kind, type, occurred_at, workspace, id, received_at, cost_source, status, key_hash"
    for n, (workspace, source) in enumerate([("a", "unknown"), ("a", "unknown"), ("a", "computed"), ("b", "unknown")]):
        conn.execute(
            f"INSERT INTO records ({columns}) VALUES (?, 'llm', 'chat', 1, ?, ?, 1, ?, 'success', ?)",
            [f"k{n}", workspace, f"id{n}", source, n],
        )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    store.migrate()
    assert store.attention_counts("a") == {"unknown_model": 2, "rejected_spans": 0}
    assert store.attention_counts("b") == {"unknown_model": 1, "rejected_spans": 0}
    assert store.attention_counts("c") == {"unknown_model": 0, "rejected_spans": 0}
    store.readers.close()
