"""Writes on every backend (the `new_store` fixture: SQLite and PostgreSQL): every field kept
exactly (text and integers at their edges too), one record per key with duplicates and conflicts
counted, a cancelled caller's records committed with the others', an unstorable record refused
alone, a failing call in the writer's transaction undoing only itself, a request larger than the
queue refused for good."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest

from spanmeter.errors import TooManyRecords
from spanmeter.record import Product, UsageRecord
from spanmeter.store.base import RecordFilter, Rejected
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


def event(key: str, occurred_at: int = 1, **fields: str) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="event", type="x", occurred_at=occurred_at, id=f"id-{key}", **fields)


def stored_keys(store: Store) -> list[str]:
    return sorted(r.idempotency_key for r in store.recent(RecordFilter(), 100))


async def grouped(store: Any, *batches: list[UsageRecord], rejected: Sequence[Rejected | None] = ()) -> list[Any]:
    """Write the batches (with the rejected spans of their request, `rejected`) so that the writer
    takes them in one transaction (it is held in a call while they queue up); each one's
    WriteResult or exception."""
    busy, release = threading.Event(), threading.Event()
    holding = asyncio.create_task(asyncio.to_thread(store.transaction, lambda c: busy.set() or release.wait(10)))
    await asyncio.to_thread(busy.wait, 10)
    spans = [*rejected, *[None] * (len(batches) - len(rejected))]
    writes = [asyncio.create_task(store.write(batch, spans)) for batch, spans in zip(batches, spans, strict=True)]
    await asyncio.sleep(0)  # all queued
    release.set()
    await holding
    return await asyncio.gather(*writes, return_exceptions=True)


def test_every_field_is_kept_exactly(new_store: Callable[[], Store]) -> None:
    async def main() -> list[UsageRecord]:
        store = new_store()
        await store.start()
        await store.write([FULL, event("bare")])
        return store.recent(RecordFilter(), 10)

    stored = {r.idempotency_key: r for r in asyncio.run(main())}
    assert stored["full"] == FULL  # money to the nano-dollar at the top of the range, exact quantities
    assert stored["bare"] == event("bare")  # absent fields stay absent


def test_text_and_integers_are_kept_exactly_at_their_edges(new_store: Callable[[], Store]) -> None:
    edges = event(
        "edges", customer_id='a "quote", a \\ backslash and \\u0000 (six characters, not a NUL)',
        user_id="😀 ü \t\n\u2028 日本", email="\x01\x1f",
    )
    edges.input_tokens, edges.output_tokens = -(2**63), 2**63 - 1  # BIGINT's range, to the unit

    async def main() -> list[UsageRecord]:
        store = new_store()
        await store.start()
        await store.write([edges])
        return store.recent(RecordFilter(), 10)

    assert asyncio.run(main()) == [edges]


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
        assert [r.idempotency_key for r in (await store.write([event("c")])).inserted] == ["c"]
        await store.close()
        return store

    asyncio.run(main())
    assert stored_keys(new_store()) == ["a", "b", "c"]  # the cancelled caller's record was committed too


def test_an_unstorable_record_fails_neither_other_requests_nor_its_neighbours(new_store: Callable[[], Store]) -> None:
    """A time past int64 (conversion refuses it; here it reaches the store anyway) in one request of
    a group commit: the other requests are stored, and so is the rest of its own request."""

    async def main() -> list[Any]:
        store = new_store()
        await store.start()
        results = await grouped(
            store,
            [event("a1"), event("a2")],
            [event("p1"), event("poison", occurred_at=2**63), event("p2")],
            [event("b1")],
        )
        assert store.failure is None  # a value was refused, not the store
        await store.close()
        return results

    innocent, poisoned, other = asyncio.run(main())
    assert [r.idempotency_key for r in innocent.inserted] == ["a1", "a2"]
    assert [r.idempotency_key for r in other.inserted] == ["b1"]
    assert [r.idempotency_key for r in poisoned.inserted] == ["p1", "p2"]
    [(refused, why)] = poisoned.refused
    assert refused.idempotency_key == "poison" and "range" in why, why
    assert stored_keys(new_store()) == ["a1", "a2", "b1", "p1", "p2"]


def test_rejected_spans_are_counted_with_their_requests_records(new_store: Callable[[], Store]) -> None:
    """Each request's rejected spans, and its records the store refuses, are counted in the
    transaction that stores its records: a group commit, and a group in which a record is refused
    (each request then written alone)."""

    async def main() -> list[Any]:
        store: Any = new_store()
        await store.start()
        try:
            together = await grouped(
                store, [event("a1", workspace="w"), event("a2", workspace="w")], [], [event("b1", workspace="v")],
                rejected=[Rejected("w", 2), Rejected("w", 3), None],
            )
            assert (store.attention_counts("w")["rejected_spans"], store.attention_counts("v")["rejected_spans"]) == (5, 0)
            alone = await grouped(
                store, [event("p1", workspace="w"), event("poison", occurred_at=2**63, workspace="w")], [event("c1")],
                rejected=[Rejected("w", 1), Rejected("v", 4)],
            )
            assert (store.attention_counts("w")["rejected_spans"], store.attention_counts("v")["rejected_spans"]) == (7, 4)
            return [*together, *alone]
        finally:
            await store.close()

    results = asyncio.run(main())
    assert [[r.idempotency_key for r in result.inserted] for result in results] == [["a1", "a2"], [], ["b1"], ["p1"], ["c1"]]
    assert [r.idempotency_key for r, _ in results[3].refused] == ["poison"]
    assert stored_keys(new_store()) == ["a1", "a2", "b1", "c1", "p1"]


def test_a_failing_call_in_the_writers_transaction_undoes_only_itself(new_store: Callable[[], Store]) -> None:
    def fails(conn: Any) -> None:
        conn.execute("INSERT INTO spanmeter_secrets (name, value) VALUES ('scratch', 'x')")
        raise ValueError("no")

    def scratch(conn: Any) -> Any:
        return tuple(conn.execute("SELECT COUNT(*) FROM spanmeter_secrets WHERE name = 'scratch'").fetchone())

    async def main() -> None:
        store: Any = new_store()
        await store.start()
        try:
            # Hold the writer inside a call while the rest queues up: then it takes the records and
            # the two calls in one go.
            busy, release = threading.Event(), threading.Event()
            holding = asyncio.create_task(asyncio.to_thread(store.transaction, lambda c: busy.set() or release.wait(10)))
            await asyncio.to_thread(busy.wait, 10)
            writes = [asyncio.create_task(store.write([event(k)])) for k in "ab"]
            await asyncio.sleep(0)  # both are queued
            failing = asyncio.create_task(asyncio.to_thread(store.transaction, fails))
            counting = asyncio.create_task(
                asyncio.to_thread(store.transaction, lambda c: tuple(c.execute("SELECT COUNT(*) FROM records").fetchone()))
            )
            await asyncio.sleep(0.2)  # both calls are queued
            release.set()
            assert await holding is True
            assert await counting == (2,)
            with pytest.raises(ValueError, match="no"):
                await failing
            assert [len((await w).inserted) for w in writes] == [1, 1]
        finally:
            await store.close()
        # after close, a transaction runs on a connection of its own
        assert store.transaction(scratch) == (0,)

    asyncio.run(main())
    assert stored_keys(new_store()) == ["a", "b"]


def test_a_request_larger_than_the_queue_is_a_permanent_error(new_store: Callable[..., Store]) -> None:
    async def main() -> None:
        store = new_store(max_queued_records=3)
        await store.start()
        with pytest.raises(TooManyRecords, match=r"yields 4 usage records.*max_queued_records: 3.*never be accepted"):
            await store.write([event(str(n)) for n in range(4)])
        assert len((await store.write([event(str(n)) for n in range(3)])).inserted) == 3

    asyncio.run(main())
