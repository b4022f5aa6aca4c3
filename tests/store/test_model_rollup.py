"""The per-model daily rollup kept by the writer equals the one its migration fills from stored
records (a database written before it existed), duplicates and any arrival order included; on
each backend (the `new_store` fixture)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from spanmeter.store.port import Store
from tests.store.backends import database, undo_migration
from tests.store.test_rollup import random_records

MIGRATION = {"sqlite": "m015_usage_daily_model", "postgres": "m007_usage_daily_model"}


def test_kept_by_the_writer_equals_the_backfill(new_store: Callable[[], Store]) -> None:
    records = random_records(random.Random(4), 600)
    for record in records[::7]:
        record.provider, record.response_model = "openai", "gpt-4o"
    for record in records[1::9]:
        record.provider, record.request_model = "", ""  # empty names stay apart from none

    async def write() -> Store:
        store = new_store()
        await store.start()
        try:
            for start in range(0, len(records), 50):
                await asyncio.gather(store.write(records[start : start + 20]), store.write(records[start + 20 : start + 50]))
        finally:
            await store.close()
        return store

    store = asyncio.run(write())
    with database(store) as conn:
        kept = sorted(tuple(row) for row in conn.execute("SELECT * FROM usage_daily_model").fetchall())
    undo_migration(store, MIGRATION, "usage_daily_model")
    upgraded = new_store()
    upgraded.migrate()  # as a newer spanmeter does to a database written before the rollup
    with database(upgraded) as conn:
        assert sorted(tuple(row) for row in conn.execute("SELECT * FROM usage_daily_model").fetchall()) == kept
    assert {row[3] for row in kept} >= {"", "=", "=openai"}
