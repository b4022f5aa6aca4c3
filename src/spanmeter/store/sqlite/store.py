"""SQLiteStore: the embedded default backend, composed of its parts.

    writer.py       the writer thread: records, and every other part's writes, in its transactions
    checkpoints.py  the WAL copied into the database beside the writer, and kept bounded
    migrations.py   the schema's named migrations
    readers.py      the read connections
    queries.py      record pages, series, totals, adoption rows (the query API, the CLI): the
                    shared SQL of store/sql/queries.py, with SQLite's key lookup and CSV lines
    aggregate.py    meter queries (aggregate_json.py: rollup answers as JSON built by SQLite)
    outbox.py       the exporters' positions, claims and dead deliveries (store/sql/outbox.py)
                    on a read connection of their own
    key_hash.py     the idempotency key's hash slots (the records' unique key on SQLite)

API keys, the rollups and the unknown-model and rejected-span counts are the shared SQL of
store/sql/ as they are. Each part is an object of its own; this class holds them and is what the
rest of spanmeter sees, through the protocols of store/port.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from spanmeter.errors import StorageError
from spanmeter.store.composed import ComposedStore
from spanmeter.store.sql.api_keys import SQLKeys
from spanmeter.store.sqlite.aggregate import SQLiteAggregate
from spanmeter.store.sqlite.checkpoints import Checkpoints
from spanmeter.store.sqlite.dialect import SQLITE
from spanmeter.store.sqlite.errors import error_reason
from spanmeter.store.sqlite.migrations import migrate
from spanmeter.store.sqlite.outbox import SQLiteOutbox
from spanmeter.store.sqlite.queries import SQLiteQueries
from spanmeter.store.sqlite.readers import Readers
from spanmeter.store.sqlite.writer import Writer

T = TypeVar("T")


class SQLiteStore(ComposedStore):
    writer: Writer

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        max_queued_records: int = 200_000,
        busy_timeout: float = 5.0,
        retry_after: float = 1.0,
        cache_mb: int = 32,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpoints = Checkpoints(self.path, busy_timeout)
        self.writer = Writer(
            self.path,
            self.checkpoints,
            synchronous=synchronous,
            max_queued_records=max_queued_records,
            busy_timeout=busy_timeout,
            retry_after=retry_after,
            cache_mb=cache_mb,
        )
        self.readers = Readers(self.path, busy_timeout)
        self.queries = SQLiteQueries(self._fetch)
        self.aggregates = SQLiteAggregate(self._fetch, self.readers.connection)
        self.keys = SQLKeys(
            self._fetch, lambda: sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None), SQLITE
        )
        self.outbox = SQLiteOutbox(self.path, busy_timeout, self.writer.transaction)

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Every read query of the parts, on a read connection (one place to observe them all)."""
        return self.readers.fetch(sql, params)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def migrate(self) -> None:
        migrate(self.path, timeout=self.busy_timeout)

    async def start(self) -> None:
        """Open (creating it if need be) and migrate the database, and check that a write commits:
        a store that cannot write refuses to start, with a StorageError saying why."""
        try:
            await asyncio.to_thread(self.migrate)
        except (OSError, sqlite3.Error) as error:
            raise StorageError(f"cannot open the database {self.path}: {error}", error_reason(error) or "other") from None
        try:
            await asyncio.to_thread(self.writer.check_writable)
        except StorageError as error:
            raise StorageError(
                f"cannot write the database {self.path}: {str(error).removeprefix('storage write failed: ')}", error.reason
            ) from None
        self.writer.start()
        self.checkpoints.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.checkpoints.stop)
        self.readers.close()
        self.outbox.close()

    @property
    def synchronous(self) -> str:
        return self.writer.synchronous

    @property
    def cache_mb(self) -> int:
        return self.writer.cache_mb

    def check_writable(self) -> None:
        self.writer.check_writable()

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction (blocking): the writer's next one while it runs."""
        return self.writer.transaction(fn)
