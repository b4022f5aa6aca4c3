"""The outbox on its own, on each backend: positions, claims, leases, dead deliveries (store/outbox.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.base import RecordFilter
from spanmeter.store.outbox import Claim, ExportFilter, LeaseLost, NotDue, Skipped
from spanmeter.store.port import Store
from spanmeter.store.sql import outbox as sql_outbox

LEASE = 60 * 10**9
NOW = 1_800_000_000 * 10**9
EVERYTHING = ExportFilter()


def record(i: int, kind: str = "llm", customer: str = "acme") -> UsageRecord:
    return UsageRecord(
        id=new_record_id(), idempotency_key=f"k{i}", workspace="w", kind=kind, type="chat" if kind == "llm" else "signup",
        occurred_at=NOW + i, received_at=NOW + i, customer_id=customer, cost_source="computed", status="success",
    )


@pytest.fixture
def store(new_store: Callable[[], Store]) -> Store:
    s = new_store()
    asyncio.run(s.start())
    return s


def write(store: Store, records: list[UsageRecord]) -> None:
    async def go() -> None:  # the writer resolves futures on the caller's loop: start a fresh one per call
        await store.write(records)
    asyncio.run(go())


def claim(store: Store, owner: str = "a", where: ExportFilter = EVERYTHING, limit: int = 10, now: int = NOW) -> Claim:
    got = store.claim("x", where, limit, owner, now, LEASE)
    assert isinstance(got, Claim), got
    return got


def test_a_batch_is_kept_until_delivered_and_resent_unchanged(store: Store) -> None:
    write(store, [record(i) for i in range(15)])
    assert store.register_exporter("x", "beginning") == 0
    first = claim(store)
    assert [r.idempotency_key for r in first.records] == [f"k{i}" for i in range(10)]
    write(store, [record(i) for i in range(15, 18)])
    again = claim(store)  # not delivered yet: the same batch, the same message id
    assert again.seqs == first.seqs and again.message_id == first.message_id
    store.delivered(again, "a", NOW)
    rest = claim(store)
    assert [r.idempotency_key for r in rest.records] == [f"k{i}" for i in range(10, 18)]
    store.delivered(rest, "a", NOW)
    assert store.claim("x", EVERYTHING, 10, "a", NOW, LEASE) is None


def test_start_at_now_begins_after_the_newest_record(store: Store) -> None:
    write(store, [record(i) for i in range(3)])
    assert store.register_exporter("x", "now") == 3
    assert store.register_exporter("x", "beginning") == 3  # registered once: the position stays
    assert store.claim("x", EVERYTHING, 10, "a", NOW, LEASE) is None


def test_another_process_waits_for_the_lease(store: Store, new_store: Callable[[], Store]) -> None:
    write(store, [record(i) for i in range(3)])
    store.register_exporter("x", "beginning")
    held = claim(store, owner="a")
    other = new_store()
    try:
        waiting = other.claim("x", EVERYTHING, 10, "b", NOW + 1, LEASE)
        assert isinstance(waiting, NotDue) and waiting.held_by == "a"
        with pytest.raises(LeaseLost):
            other.delivered(held, "b", NOW)
        taken = other.claim("x", EVERYTHING, 10, "b", NOW + LEASE + 1, LEASE)  # a stopped renewing
        assert isinstance(taken, Claim) and taken.message_id == held.message_id
        with pytest.raises(LeaseLost):
            store.delivered(held, "a", NOW + LEASE + 2)
        store.release("x", "a")  # not a's any more: changes nothing
        assert isinstance(store.claim("x", EVERYTHING, 10, "a", NOW + LEASE + 3, LEASE), NotDue)
    finally:
        other.outbox.close()


def test_backoff_is_kept_in_the_store(store: Store) -> None:
    write(store, [record(0)])
    store.register_exporter("x", "beginning")
    batch = claim(store)
    store.retry_later(batch, "a", NOW, NOW + 5 * 10**9, "HTTP 503")
    assert store.claim("x", EVERYTHING, 10, "a", NOW + 10**9, LEASE) == NotDue(NOW + 5 * 10**9)
    retried = claim(store, now=NOW + 6 * 10**9)
    assert (retried.attempts, retried.failing_since, retried.seqs) == (1, NOW, batch.seqs)
    [state] = store.exporter_states()
    assert (state.attempts, state.last_error, state.claim_end) == (1, "HTTP 503", batch.end)


def test_a_filter_skips_records_and_scans_a_bounded_window(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_outbox, "SCAN_WINDOW", 4)
    write(store, [record(i) for i in range(10)] + [record(10, kind="event")])
    store.register_exporter("x", "beginning")
    events = ExportFilter(kinds=("event",))
    assert store.claim("x", events, 10, "a", NOW, LEASE) is None  # seqs 1-4: none match
    assert store.claim("x", events, 10, "a", NOW, LEASE) is None  # 5-8
    found = claim(store, where=events)  # 9-11
    assert [r.kind for r in found.records] == ["event"] and found.end == 11


def test_a_kept_batch_that_no_longer_matches_its_filter_is_passed(store: Store) -> None:
    write(store, [record(i) for i in range(3)])
    store.register_exporter("x", "beginning")
    claim(store)  # kept, then the config's filter changes
    assert store.claim("x", ExportFilter(kinds=("meter",)), 10, "a", NOW, LEASE) is None
    assert store.exporter_states()[0].position == 3


def test_dead_deliveries_are_listed_requeued_and_sent_before_new_records(store: Store) -> None:
    write(store, [record(i, customer=f"c{i}") for i in range(4)])
    store.register_exporter("x", "beginning")
    batch = claim(store, limit=2)
    store.dead(batch, "a", NOW, "HTTP 400: bad customer")
    dead = store.deliveries("x", "dead", 10)
    assert [(d.customer_id, d.state, d.attempts, d.reason) for d in dead] == [
        ("c0", "dead", 1, "HTTP 400: bad customer"), ("c1", "dead", 1, "HTTP 400: bad customer")
    ]
    assert store.requeue_dead("x", ["no-such-id"]).count == 0
    done = store.requeue_dead(None, [dead[1].record_id])
    assert (done.count, done.exporters) == (1, ["x"])
    again = claim(store)
    assert again.requeued and [r.customer_id for r in again.records] == ["c1"]
    store.delivered(again, "a", NOW)
    assert [d.customer_id for d in store.deliveries(None, None, 10)] == ["c0"]
    new = claim(store)
    assert [r.customer_id for r in new.records] == ["c2", "c3"]


def test_no_outbox_row_is_written_per_record(store: Store) -> None:
    store.register_exporter("x", "now")
    write(store, [record(i) for i in range(50)])
    conn = store.outbox._outbox()[0]
    assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
    assert store.exporter_states()[0].behind == 50


def test_items_come_from_sql_and_from_item_of_where_sql_cannot(store: Store) -> None:
    from decimal import Decimal

    from spanmeter.encoding import item_text

    plain, odd = record(0, kind="meter"), record(1, kind="meter")
    plain.quantity, odd.quantity = Decimal("2.50"), Decimal("1E+3")  # SQL does not format exponents
    write(store, [plain, odd])
    store.register_exporter("x", "beginning")
    made: list[str] = []

    def item_of(r: UsageRecord) -> str:
        made.append(r.idempotency_key)
        return item_text(r)

    batch = store.claim("x", EVERYTHING, 10, "a", NOW, LEASE, item_of)
    assert isinstance(batch, Claim) and batch.records == []
    assert "k1" in made  # the other: built by SQLite itself, by item_of on PostgreSQL
    stored = {r.idempotency_key: r for r in store.recent(RecordFilter(), 10)}
    assert [json.loads(i) for i in batch.items] == [json.loads(item_text(stored[k])) for k in ("k0", "k1")]
    assert [json.loads(i)["quantity"] for i in batch.items] == ["2.5", "1000"]


def test_progress_commits_a_batch_head_and_the_next_claim_is_the_rest(store: Store) -> None:
    write(store, [record(i, customer=f"c{i}") for i in range(6)])
    store.register_exporter("x", "beginning")
    batch = claim(store, limit=5)
    store.retry_later(batch, "a", NOW, NOW, "HTTP 503")
    batch = claim(store, limit=5)
    rest = store.progress(batch, "a", NOW, 2, {1: "HTTP 400"})
    assert [r.customer_id for r in rest.records] == ["c2", "c3", "c4"] and rest.end == batch.end
    again = claim(store, limit=5)  # a restart: the rest of the batch, not its settled head
    assert (again.seqs, again.attempts, again.failing_since) == (rest.seqs, 0, None)
    assert [(d.customer_id, d.reason) for d in store.deliveries("x", "dead", 10)] == [("c1", "HTTP 400")]
    store.progress(again, "a", NOW, 3, {})
    [state] = store.exporter_states()
    assert (state.position, state.claim_end, state.delivered, state.retried) == (5, None, 4, 1)
    assert [r.customer_id for r in claim(store).records] == ["c5"]
    with pytest.raises(ValueError, match="progress of 0 records"):
        store.progress(again, "a", NOW, 0, {})


def test_progress_on_requeued_deliveries(store: Store) -> None:
    write(store, [record(i, customer=f"c{i}") for i in range(3)])
    store.register_exporter("x", "beginning")
    store.dead(claim(store), "a", NOW, "HTTP 400")
    store.requeue_dead("x", None)
    requeued = claim(store)
    rest = store.progress(requeued, "a", NOW, 2, {0: "HTTP 422"})
    assert rest.requeued and [r.customer_id for r in rest.records] == ["c2"]
    assert [(d.customer_id, d.state) for d in store.deliveries("x", None, 10)] == [("c0", "dead"), ("c2", "pending")]
    assert claim(store).seqs == rest.seqs


def test_skipped_records_are_counted_with_the_settlement_that_moves_past_them(store: Store) -> None:
    write(store, [record(i) for i in range(6)])
    store.register_exporter("x", "beginning")
    batch = claim(store, limit=3)
    rest = store.progress(batch, "a", NOW, 2, {}, skipped=[Skipped("no_meter_token", 1, "no meter token for 'a'")])
    store.delivered(rest, "a", NOW + 1, [Skipped("no_meter_token", 1, "no meter token for 'b'")])
    batch = claim(store, limit=3)
    other = store.claim("x", EVERYTHING, 3, "b", NOW + LEASE + 1, LEASE)  # takes the lease: "a" stalled
    assert isinstance(other, Claim) and other.seqs == batch.seqs
    with pytest.raises(LeaseLost):  # a settlement that does not commit counts no skip either
        store.delivered(batch, "a", NOW + 2, [Skipped("no_quantity", 3, "'chat' with quantity 0")])
    store.delivered(other, "b", NOW + 3, [Skipped("no_quantity", 2, "'chat' with quantity 0 or none")])
    [state] = store.exporter_states()
    assert (state.position, state.delivered) == (6, 2)  # the skipped ones were not delivered
    assert state.skipped == (
        Skipped("no_meter_token", 2, "no meter token for 'b'", NOW + 1),
        Skipped("no_quantity", 2, "'chat' with quantity 0 or none", NOW + 3),
    )
