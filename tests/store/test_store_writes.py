"""Writes on every backend (the `new_store` fixture: SQLite and PostgreSQL): every field kept
exactly, one record per key with duplicates and conflicts counted, a cancelled caller's records
committed with the others'."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from spanmeter.record import Product, UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.port import Store

FULL = UsageRecord(
    idempotency_key="full", kind="meter", type="calls", occurred_at=5, id="id-full", received_at=6, latency_ms=7,
    customer_id="acme", user_id="u1", email="a@b.c", account_domain="b.c", provider="openai",
    request_model="gpt-4o", response_model="gpt-4o-2024", operation="chat", input_tokens=10, output_tokens=2,
    total_tokens=12, cache_read_tokens=3, cache_write_tokens=1, reasoning_tokens=1,
    cost_usd=Decimal("9223372036.854775807"), cost_source="computed", price_ref="ref",
    reported_cost_usd=Decimal("0.000000001"), status="error", error_type="429", event_name="signup",
    event_family="activation", product=Product("p1", "Product", "plan", "2", "cat"), source="web",
    campaign_id="cmp", meter="calls", quantity=Decimal("999999999999999.000000000000000000001"),
    conversation_id="c1", message_id="m1", task_id="t", contact_id="ct", blueprint_id="bp", bot_id="bot",
    dataset_id="ds", skillset_id="ss", ability_id="ab", feature="chat", tags=["x", "ü"], trace_id="ab" * 16,
    span_id="cd" * 8, service_name="svc", meta={"plan": "pro", "région": "Zürich"}, query="q?",
)  # fmt: skip


def event(key: str, **fields: str) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="event", type="x", occurred_at=1, id=f"id-{key}", **fields)


def test_every_field_is_kept_exactly(new_store: Callable[[], Store]) -> None:
    async def main() -> list[UsageRecord]:
        store = new_store()
        await store.start()
        await store.write([FULL, event("bare")])
        return store.recent(RecordFilter(), 10)

    stored = {r.idempotency_key: r for r in asyncio.run(main())}
    assert stored["full"] == FULL  # money to the nano-dollar at the top of the range, exact quantities
    assert stored["bare"] == event("bare")  # absent fields stay absent


def test_one_record_per_key_duplicates_and_conflicts_counted(new_store: Callable[[], Store]) -> None:
    async def main() -> None:
        store = new_store()
        await store.start()
        first = await store.write([event("a"), event("a", customer_id="c"), event("b")])
        assert (len(first.inserted), first.duplicates, first.conflicts) == (2, 1, 1)
        again = await store.write([UsageRecord(idempotency_key="a", kind="event", type="x", occurred_at=1, id="other")])
        assert (again.inserted, again.duplicates, again.conflicts) == ([], 1, 0)  # id and times are not content
        other_workspace = await store.write([event("a", workspace="w2")])
        assert len(other_workspace.inserted) == 1  # keys are unique per workspace
        assert store.find_record_id("default", "a") == "id-a"
        assert store.find_record_id("w2", "a") == "id-a" and store.find_record_id("default", "none") is None

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_commit_to_the_others(new_store: Callable[[], Store]) -> None:
    async def main() -> Store:
        store = new_store()
        await store.start()
        gone = asyncio.create_task(store.write([event("a")]))
        stays = asyncio.create_task(store.write([event("b")]))
        await asyncio.sleep(0)  # both are queued
        gone.cancel()
        assert [r.idempotency_key for r in (await stays).inserted] == ["b"]
        with pytest.raises(asyncio.CancelledError):
            await gone
        await store.close()
        return store

    asyncio.run(main())
    reader = new_store()  # the cancelled caller's record was committed too
    assert sorted(r.idempotency_key for r in reader.recent(RecordFilter(), 10)) == ["a", "b"]
