"""The SQLite writer's own behaviour: the WAL kept bounded, absent values bound as NaN, the short
INSERT of batches without rare fields. (What every backend's writer does is in test_store_writes.py.)"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from spanmeter.record import UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.sqlite import SQLiteStore, checkpoints
from spanmeter.store.sqlite import writer as sqlite_store


def record(key: str) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="event", type="x", occurred_at=1, id=f"id-{key}")


def largest_wal(path: Path, batches: int, pause: float = 0.0) -> int:
    """Write `batches` batches of 300 records; the largest the WAL file got. Checks none was lost."""
    wal = Path(f"{path}-wal")
    largest = 0

    async def main() -> None:
        nonlocal largest
        store = SQLiteStore(path)
        await store.start()
        try:
            for batch in range(batches):
                await store.write([record(f"{batch}-{i}") for i in range(300)])
                largest = max(largest, wal.stat().st_size)
                await asyncio.sleep(pause)
        finally:
            await store.close()

    asyncio.run(main())
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == batches * 300
    return largest


# SQLite-only: the WAL file and its checkpoints are SQLite's.
def test_the_wal_starts_over_under_steady_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints beside a steady writer never leave the WAL fully copied, so SQLite would never
    rewind it; the writer finishes one past WAL_RESTART_PAGES, and the WAL stays near that size."""
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.02)
    monkeypatch.setattr(checkpoints, "WAL_RESTART_PAGES", 200)  # 800 kB
    monkeypatch.setattr(checkpoints, "WAL_LIMIT_PAGES", 1_000_000)  # no truncation: only the rewind bounds it
    largest = largest_wal(tmp_path / "w.db", batches=150, pause=0.002)
    assert largest < 20 * 200 * 4096, f"the WAL grew to {largest} bytes"  # without the rewind: ~67 MB


# SQLite-only: the WAL file and its checkpoints are SQLite's.
def test_the_writer_truncates_a_wal_the_checkpoints_cannot_keep_up_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 3600.0)  # the checkpoint thread never gets to run
    monkeypatch.setattr(checkpoints, "WAL_LIMIT_PAGES", 500)  # 2 MB
    largest = largest_wal(tmp_path / "t.db", batches=100)
    assert largest < 3 * 500 * 4096, f"the WAL grew to {largest} bytes"  # about 30 MB without truncation


# SQLite-only: the NaN binding and typeof() are the SQLite writer's (PostgreSQL binds arrays).
def test_absent_fields_are_stored_as_null_and_a_repeat_is_a_plain_duplicate(tmp_path: Path) -> None:
    # The writer binds absent values as NaN (faster than None); SQLite must store them as NULL, and
    # comparing a repeat with the stored row must not see a difference in them.
    async def main() -> None:
        store = SQLiteStore(tmp_path / "w.db")
        await store.start()
        try:
            first = await store.write([record("a")])
            again = await store.write([UsageRecord(idempotency_key="a", kind="event", type="x", occurred_at=1, id="other")])
            assert len(first.inserted) == 1 and (again.duplicates, again.conflicts) == (1, 0)
            changed = UsageRecord(idempotency_key="a", kind="event", type="x", occurred_at=1, id="x", customer_id="c")
            assert (await store.write([changed])).conflicts == 1
        finally:
            await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "w.db") as conn:
        types = conn.execute("SELECT typeof(customer_id), typeof(input_tokens), typeof(cost_usd_nano) FROM records").fetchall()
        assert types == [("null", "null", "null")]
        assert conn.execute("SELECT COUNT(*) FROM records WHERE customer_id IS NULL AND meta IS NULL").fetchone() == (1,)


# SQLite-only: the short INSERT without the rare columns is the SQLite writer's.
def test_batches_with_and_without_rare_fields_store_every_field(tmp_path: Path) -> None:
    # A batch whose records leave all the rare columns empty is inserted naming only the others
    # (sqlite_store._INSERT_COMMON); a batch with any of them set, every column. Both must store
    # each record field for field.
    from decimal import Decimal

    from spanmeter.record import Product

    call = UsageRecord(
        idempotency_key="call", kind="llm", type="chat", occurred_at=5, id="id-call", received_at=6, latency_ms=7,
        customer_id="acme", user_id="u1", provider="openai", request_model="gpt-4o", response_model="gpt-4o-2024",
        operation="chat", input_tokens=10, output_tokens=2, total_tokens=12, cache_read_tokens=3,
        cache_write_tokens=1, reasoning_tokens=1, cost_usd=Decimal("0.000123"), cost_source="computed",
        price_ref="ref", status="error", error_type="429", conversation_id="c1", message_id="m1", feature="chat",
        trace_id="ab" * 16, span_id="cd" * 8, service_name="svc",
    )  # fmt: skip
    rare = UsageRecord(
        idempotency_key="event", kind="event", type="signup", occurred_at=8, id="id-event", email="a@b.c",
        account_domain="b.c", reported_cost_usd=Decimal("1.5"), event_name="signup", event_family="activation",
        product=Product("p1", "Product", "plan", "2", "cat"), source="web", campaign_id="cmp", meter="calls",
        quantity=Decimal("2.25"), task_id="t", contact_id="ct", blueprint_id="bp", bot_id="bot", dataset_id="ds",
        skillset_id="ss", ability_id="ab", tags=["x", "y"], meta={"plan": "pro"}, query="q?",
    )  # fmt: skip
    assert sqlite_store._RARE <= set(sqlite_store._ROW_COLUMNS)  # a stale or misspelt name leaves its column in the short INSERT
    assert sqlite_store._rare_of(sqlite_store.record_to_row(call) + (0,)) == sqlite_store._NO_RARE
    assert not any(v is None for v in sqlite_store._rare_of(sqlite_store.record_to_row(rare) + (0,)))
    plain = UsageRecord(**{**{n: getattr(call, n) for n in ("kind", "type", "occurred_at")}, "idempotency_key": "k3", "id": "id-3"})

    async def main() -> list[UsageRecord]:
        store = SQLiteStore(tmp_path / "w.db")
        await store.start()
        try:
            assert len((await store.write([call])).inserted) == 1  # the common columns only
            assert len((await store.write([plain, rare])).inserted) == 2  # every column
            return store.recent(RecordFilter(), 10)
        finally:
            await store.close()

    stored = {r.idempotency_key: r for r in asyncio.run(main())}
    assert stored["call"] == call
    assert stored["event"] == rare
    assert stored["k3"] == plain
