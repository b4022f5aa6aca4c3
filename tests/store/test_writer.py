"""The writer thread: a caller that goes away does not take other callers' records, or its own, with it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from spanmeter.record import UsageRecord
from spanmeter.store.sqlite import SQLiteStore


def record(key: str) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="event", type="x", occurred_at=1, id=f"id-{key}")


def test_a_cancelled_caller_leaves_the_commit_to_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteStore(tmp_path / "w.db")
        await store.start()
        try:
            gone = asyncio.create_task(store.write([record("a")]))
            stays = asyncio.create_task(store.write([record("b")]))
            await asyncio.sleep(0)  # both are queued
            gone.cancel()
            assert [r.idempotency_key for r in (await stays).inserted] == ["b"]
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert [r.idempotency_key for r in (await store.write([record("c")])).inserted] == ["c"]
        finally:
            await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "w.db") as conn:  # the cancelled caller's record was committed too
        assert sorted(k for (k,) in conn.execute("SELECT idempotency_key FROM records")) == ["a", "b", "c"]
