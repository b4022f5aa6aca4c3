"""The overview's unknown-model and rejected-span counts are stored: a restart of the collector
does not reset them (Prometheus' counters, per process, start again at 0). On each backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from spanmeter.record import UsageRecord
from spanmeter.store.port import AttentionCounts, Store
from tests.conftest import RunningCollector, make_config, running_collector
from tests.otlp_helpers import i, json_request, llm_raw_attrs, raw_span, s
from tests.store.backends import undo_migration

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
