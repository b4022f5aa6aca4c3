"""PostgresStore: several spanmeter instances on one database, every guarantee of SQLite kept.

    writer.py      the writer thread: records (records.py), and the outbox's writes, in
                   transactions holding the store's write lock, so seq is the commit order
    migrations.py  the schema's named, versioned migrations, applied once under a lock
    outbox.py      the exporters' outbox: its read connection and errors
    dialect.py     what the shared SQL (store/sql/: queries, aggregates, API keys, outbox,
                   rollups) says in PostgreSQL's dialect where SQLite's differs
    connection.py  the pool, and connections that take the shared SQL's statements

Reads (the query API, API keys, the outbox's claims) use a connection pool opened on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from spanmeter.errors import StorageError
from spanmeter.store.composed import ComposedStore
from spanmeter.store.postgres.connection import SqliteLike, connect, new_pool, redacted, unavailable
from spanmeter.store.postgres.dialect import POSTGRES
from spanmeter.store.postgres.migrations import migrate
from spanmeter.store.postgres.outbox import PostgresOutbox
from spanmeter.store.postgres.writer import Writer
from spanmeter.store.sql.aggregate import SQLAggregate
from spanmeter.store.sql.api_keys import SQLKeys
from spanmeter.store.sql.queries import SQLQueries

T = TypeVar("T")


class PostgresStore(ComposedStore):
    writer: Writer

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        max_queued_records: int = 200_000,
        connect_timeout: float = 5.0,
        retry_after: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.busy_timeout = connect_timeout
        self.pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None  # opened on first use
        self._pool_lock = threading.Lock()
        self.writer = Writer(
            dsn, max_queued_records=max_queued_records, connect_timeout=connect_timeout, retry_after=retry_after
        )
        self.queries = SQLQueries(self._fetch, POSTGRES)
        self.aggregates = SQLAggregate(self._fetch, POSTGRES)
        # Each change on a connection of its own, as on SQLite (keys change rarely: the CLI).
        self.keys = SQLKeys(self._fetch, lambda: SqliteLike(connect(dsn, connect_timeout)), POSTGRES)
        self.outbox = PostgresOutbox(dsn, connect_timeout, self.writer.transaction)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redacted(self.dsn)

    def exists(self) -> bool:
        """A PostgreSQL database is created by its administrator (`migrate` adds the tables): it
        exists when it answers; one that cannot be reached raises a StorageError saying why."""
        try:
            connect(self.dsn, self.busy_timeout).close()
        except psycopg.Error as error:
            raise self._cannot_open(error) from None
        return True

    def migrate(self) -> None:
        """Apply the pending migrations (once, whatever the number of instances starting); a
        database that cannot be reached or migrated raises a StorageError saying why."""
        try:
            conn = connect(self.dsn, self.busy_timeout)
            try:
                migrate(SqliteLike(conn))
            finally:
                conn.close()
        except psycopg.Error as error:
            raise self._cannot_open(error) from None

    def _cannot_open(self, error: psycopg.Error) -> StorageError:
        return StorageError(f"cannot open the database {self.location}: {error}", "cannot_open")

    async def start(self) -> None:
        """Connect, migrate and start the writer; a database that cannot be reached refuses the
        start with a StorageError saying why."""
        await asyncio.to_thread(self.migrate)
        self.writer.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.writer.stop)
        self.outbox.close()
        await asyncio.to_thread(self._close_pool)

    def transaction(self, fn: Callable[[SqliteLike], T]) -> T:
        """Run `fn` in a write transaction holding the store's write lock (blocking)."""
        return self.writer.transaction(fn)


    # --- the shared parts' connections ---------------------------------------------------------
    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = new_pool(self.dsn, self.pool_size, self.busy_timeout)
                self._pool.open()
            return self._pool.connection()

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Every read query of the parts, on a pooled connection. A database that cannot be
        reached raises a StorageError (the API answers 503 with a retry delay); while the writer
        finds it down, at once, instead of each read waiting for the pool's timeout (callers on
        the event loop, API-key lookups, would stall every request meanwhile)."""
        failure = self.writer.read_failure if self.writer.queue.running else None
        if failure is not None:
            self._drop_pool()
            raise StorageError(failure, "unavailable")
        try:
            with self._connection() as conn:
                return SqliteLike(conn).execute(sql, params).fetchall()
        except psycopg.OperationalError as error:  # lost, refused, the pool's timeout: the database's
            self._drop_pool()
            raise unavailable(error, self.dsn, "storage read failed") from None

    def _drop_pool(self) -> None:
        """Forget the pool after a failure; the next read opens a new one. The old one's
        connections are dead, and it would retry them with a growing delay (seconds, then
        minutes): reads would keep failing for that long after the database is back. It is
        closed in the background (closing waits for its threads; callers may be on the event loop)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.close, name="spanmeter-pool-close", daemon=True).start()

    def _close_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
