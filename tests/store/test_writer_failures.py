"""The writer when a commit fails: one request's unstorable record never fails another request's
records, a failing disk is named as such, and the store recovers without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from spanmeter.errors import StorageError, TooManyRecords
from spanmeter.record import UsageRecord
from spanmeter.store.sqlite import SQLiteStore


def record(key: str, occurred_at: int = 1) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="event", type="x", occurred_at=occurred_at, id=f"id-{key}")


@asynccontextmanager
async def started(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def grouped(store: SQLiteStore, *batches: list[UsageRecord]) -> list[Any]:
    """Write the batches so that the writer takes them in one transaction (it is held in a call
    while they queue up); each one's WriteResult or exception."""
    busy, release = threading.Event(), threading.Event()
    holding = asyncio.create_task(asyncio.to_thread(store.transaction, lambda c: busy.set() or release.wait(10)))
    await asyncio.to_thread(busy.wait, 10)
    writes = [asyncio.create_task(store.write(batch)) for batch in batches]
    await asyncio.sleep(0)  # all queued
    release.set()
    await holding
    return await asyncio.gather(*writes, return_exceptions=True)


def stored_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(k for (k,) in conn.execute("SELECT idempotency_key FROM records"))


def test_an_unstorable_record_fails_neither_other_requests_nor_its_neighbours(tmp_path: Path) -> None:
    """A time past int64 (conversion refuses it; here it reaches the store anyway) in one request of
    a group commit: the other requests are stored, and so is the rest of its own request."""

    async def main() -> list[Any]:
        async with started(tmp_path / "w.db") as store:
            results = await grouped(
                store,
                [record("a1"), record("a2")],
                [record("p1"), record("poison", occurred_at=2**63), record("p2")],
                [record("b1")],
            )
            assert store.failure is None
            return results

    innocent, poisoned, other = asyncio.run(main())
    assert [r.idempotency_key for r in innocent.inserted] == ["a1", "a2"]
    assert [r.idempotency_key for r in other.inserted] == ["b1"]
    assert [r.idempotency_key for r in poisoned.inserted] == ["p1", "p2"]
    assert [(r.idempotency_key, why) for r, why in poisoned.refused] == [
        ("poison", "a value is out of the store's range (Python int too large to convert to SQLite INTEGER)")
    ]
    assert stored_keys(tmp_path / "w.db") == ["a1", "a2", "b1", "p1", "p2"]


def test_a_request_larger_than_the_queue_is_a_permanent_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "w.db", max_queued_records=3) as store:
            with pytest.raises(TooManyRecords, match=r"yields 4 usage records.*max_queued_records: 3.*never be accepted"):
                await store.write([record(str(n)) for n in range(4)])
            assert len((await store.write([record(str(n)) for n in range(3)])).inserted) == 3

    asyncio.run(main())


def limit_pages(pages: Callable[[sqlite3.Connection], int]) -> Callable[[sqlite3.Connection], None]:
    """A call run on the writer's own connection: SQLite's page limit makes its writes fail as a
    full disk does (SQLITE_FULL), until it is raised again."""
    return lambda conn: conn.execute(f"PRAGMA max_page_count={pages(conn)}") and None


def test_disk_full_is_said_reported_and_recovered_from(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "w.db") as store:
            await store.write([record("before")])
            current = lambda conn: conn.execute("PRAGMA page_count").fetchone()[0]
            await asyncio.to_thread(store.transaction, limit_pages(current))
            with pytest.raises(StorageError) as error:
                await store.write([record(f"big-{n}") for n in range(2000)])
            assert str(error.value).startswith("storage write failed: disk full: database or disk is full")
            assert error.value.reason == "disk_full"
            assert store.failure is not None and "disk full" in store.failure
            await asyncio.to_thread(store.transaction, limit_pages(lambda conn: 1_073_741_823))
            # The writer's probe (or the next write) finds the disk writable again: no restart.
            assert len((await store.write([record("after")])).inserted) == 1
            assert store.failure is None

    asyncio.run(main())
    assert stored_keys(tmp_path / "w.db") == ["after", "before"]


def test_a_store_that_cannot_write_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    SQLiteStore(path).migrate()  # created
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match=rf"cannot write the database {path}: database is locked"):
            asyncio.run(SQLiteStore(path, busy_timeout=0.1).start())
    finally:
        blocker.execute("ROLLBACK")


def test_a_database_path_under_a_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "w.db"
    with pytest.raises(StorageError, match=rf"cannot open the database {path}: .*File exists"):
        asyncio.run(SQLiteStore(path).start())
