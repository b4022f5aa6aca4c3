"""The per-model daily rollup kept by the writer equals the one its migration fills from stored
records (a database written before it existed), duplicates and any arrival order included."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from spanmeter.store.sqlite import SQLiteStore, model_rollup
from tests.store.test_rollup import random_records


def test_kept_by_the_writer_equals_the_backfill(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    records = random_records(random.Random(4), 600)
    for record in records[::7]:
        record.provider, record.response_model = "openai", "gpt-4o"
    for record in records[1::9]:
        record.provider, record.request_model = "", ""  # empty names stay apart from none

    async def write() -> None:
        store = SQLiteStore(path)
        await store.start()
        try:
            for start in range(0, len(records), 50):
                await store.write(records[start : start + 50])
        finally:
            await store.close()

    asyncio.run(write())
    conn = sqlite3.connect(path)
    kept = sorted(conn.execute("SELECT * FROM usage_daily_model").fetchall())
    conn.execute("DELETE FROM usage_daily_model")
    for statement in model_rollup.BACKFILL:
        conn.execute(statement)
    assert sorted(conn.execute("SELECT * FROM usage_daily_model").fetchall()) == kept
    assert {row[3] for row in kept} >= {"", "=", "=openai"}
    conn.close()
