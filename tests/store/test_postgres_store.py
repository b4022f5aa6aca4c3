"""What only the PostgreSQL store has to show: migrations once under concurrent starts, values
PostgreSQL cannot hold refused alone, a database it cannot reach refusing the start, stored keys
in a batch written as if new, a transaction's rows in several INSERTs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import psycopg
import pytest

from spanmeter.errors import StorageError
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.constants import DAY_NS
from spanmeter.store.postgres import PostgresStore, records
from spanmeter.store.postgres.migrations import MIGRATIONS
from spanmeter.store.queries import RecordQuery
from tests.postgres_server import PostgresServer


def test_instances_starting_together_apply_each_migration_once(postgres: PostgresServer) -> None:
    dsn = postgres.new_database()
    with concurrent.futures.ThreadPoolExecutor(4) as starting:
        list(starting.map(lambda _: PostgresStore(dsn).migrate(), range(4)))
    with psycopg.connect(dsn) as conn:
        applied = [name for (name,) in conn.execute("SELECT name FROM spanmeter_migrations ORDER BY name")]
    assert applied == sorted(name for name, _ in MIGRATIONS)


def test_a_value_postgresql_cannot_hold_is_refused_alone(postgres: PostgresServer) -> None:
    now = time.time_ns()

    def record(key: str, **fields: str) -> UsageRecord:
        return UsageRecord(idempotency_key=key, kind="event", type="e", occurred_at=now, id=new_record_id(),
                           received_at=now, **fields)

    async def main() -> None:
        store = PostgresStore(postgres.new_database())
        await store.start()
        try:
            result = await store.write([record("a"), record("b", customer_id="nul\x00byte"), record("c")])
            assert [r.idempotency_key for r in result.inserted] == ["a", "c"]
            [(refused, why)] = result.refused
            assert refused.idempotency_key == "b" and "NUL" in why
            assert store.failure is None  # the database is fine: a value was refused, not the store
        finally:
            await store.close()

    asyncio.run(main())


def test_a_database_that_cannot_be_reached_refuses_the_start(postgres: PostgresServer) -> None:
    dsn = f"postgresql://postgres:secret@127.0.0.1:{postgres.port}/no_such_database"
    with pytest.raises(StorageError, match=r"cannot open the database postgresql://postgres:\*\*\*@.*no_such_database") as error:
        asyncio.run(PostgresStore(dsn, connect_timeout=1).start())
    assert "secret" not in str(error.value)


def test_a_stored_key_among_new_ones_is_stored_and_rolled_up_once(postgres: PostgresServer) -> None:
    """A batch is first written in one round trip as if all its keys were new; a stored key rolls
    that attempt back whole and the batch goes again the careful way: every record once in the
    records, the rollups and the pages, whichever way each batch took."""
    now = time.time_ns()

    def llm(key: str, tokens: int, conversation: str | None = None) -> UsageRecord:
        return UsageRecord(idempotency_key=key, kind="llm", type="chat", occurred_at=now, id=new_record_id(),
                           received_at=now, workspace="w", input_tokens=tokens, output_tokens=0,
                           conversation_id=conversation)

    async def main() -> None:
        store = PostgresStore(postgres.new_database())
        await store.start()
        try:
            first = await store.write([llm("a", 1), llm("b", 10, "talk")])
            again = await store.write([llm("c", 100, "talk"), llm("b", 10, "talk"), llm("c", 100)])
            stored_only = await store.write([llm("a", 1)])
            later = await store.write([llm("d", 1000, "other")])
            last = await store.write([llm("e", 10000)])
            assert [[r.idempotency_key for r in w.inserted] for w in (first, again, stored_only, later, last)] == [
                ["a", "b"], ["c"], [], ["d"], ["e"]
            ]
            assert (again.duplicates, again.conflicts, stored_only.duplicates) == (2, 1, 1)  # c's repeat differs
            day = now // DAY_NS
            [totals] = store.daily_totals("w", None, day * DAY_NS, (day + 1) * DAY_NS)
            assert (totals.messages, totals.tokens) == (5, 11111)
            assert store.new_conversations("w", None, day * DAY_NS, (day + 1) * DAY_NS) == {day: 2}
            pages = store.query_records(RecordQuery("w", order="asc"))
            assert [r.idempotency_key for _, r in pages] == ["a", "b", "c", "d", "e"]
            assert [seq for seq, _ in pages] == sorted(seq for seq, _ in pages)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_transaction_of_many_rows_goes_in_several_inserts(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer sends a transaction's rows in INSERTs of a bounded number of rows (a jsonb value
    has a size limit, and the writer takes everything queued at once): each way, every record
    counted once, a stored key in a later INSERT found, the rollups and the pages whole."""
    monkeypatch.setattr(records, "_CHUNK_ROWS", 2)
    now = time.time_ns()

    def llm(key: str, tokens: int) -> UsageRecord:
        return UsageRecord(idempotency_key=key, kind="llm", type="chat", occurred_at=now, id=new_record_id(),
                           received_at=now, workspace="w", input_tokens=tokens, output_tokens=0)

    async def main() -> None:
        store = PostgresStore(postgres.new_database())
        await store.start()
        try:
            first = await store.write([llm(key, 1) for key in "abcde"])  # three INSERTs, all new
            second = await store.write([llm(key, 10) for key in "fghia"])  # "a" stored, in the third
            assert [r.idempotency_key for r in first.inserted] == list("abcde")
            assert [r.idempotency_key for r in second.inserted] == list("fghi")
            assert (second.duplicates, second.conflicts) == (1, 1)
            day = now // DAY_NS
            [totals] = store.daily_totals("w", None, day * DAY_NS, (day + 1) * DAY_NS)
            assert (totals.messages, totals.tokens) == (9, 45)
            pages = store.query_records(RecordQuery("w", order="asc"))
            assert [r.idempotency_key for _, r in pages] == list("abcdefghi")
        finally:
            await store.close()

    asyncio.run(main())
