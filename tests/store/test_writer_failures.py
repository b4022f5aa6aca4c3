"""The SQLite writer when its database file fails: a full disk is named as such and recovered
from without a restart; a locked or unreachable file refuses the start. (An unstorable record and
a request larger than the queue, on every backend, are in test_store_writes.py; PostgreSQL's lost
connection in test_postgres_outage.py.)"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from spanmeter.errors import StorageError
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


def stored_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(k for (k,) in conn.execute("SELECT idempotency_key FROM records"))


def limit_pages(pages: Callable[[sqlite3.Connection], int]) -> Callable[[sqlite3.Connection], None]:
    """A call run on the writer's own connection: SQLite's page limit makes its writes fail as a
    full disk does (SQLITE_FULL), until it is raised again."""
    return lambda conn: conn.execute(f"PRAGMA max_page_count={pages(conn)}") and None


# SQLite-only: SQLITE_FULL, made with SQLite's page limit.
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


# SQLite-only: a database file locked by another process's write transaction.
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


# SQLite-only: a database file path.
def test_a_database_path_under_a_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "w.db"
    with pytest.raises(StorageError, match=rf"cannot open the database {path}: .*File exists"):
        asyncio.run(SQLiteStore(path).start())
