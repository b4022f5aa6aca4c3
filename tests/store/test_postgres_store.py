"""What only the PostgreSQL store has to show: migrations once under concurrent starts, values
PostgreSQL cannot hold refused alone, a database it cannot reach refusing the start."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import psycopg
import pytest

from spanmeter.errors import StorageError
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.postgres import PostgresStore
from spanmeter.store.postgres.migrations import MIGRATIONS
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
