"""The outbox on PostgreSQL (store/sql/outbox.py): claims read on a connection of their own (a
repeatable-read snapshot), changes in the store's write transactions (`transaction`, holding the
write lock); psycopg's errors told as StorageError (the database unavailable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from spanmeter.errors import StorageError
from spanmeter.store.postgres.connection import SqliteLike, connect, unavailable
from spanmeter.store.postgres.dialect import POSTGRES
from spanmeter.store.sql.connection import Connection, OwnConnection
from spanmeter.store.sql.outbox import SQLOutbox


class PostgresOutbox(SQLOutbox):
    def __init__(self, dsn: str, timeout: float, transaction: Callable[[Callable[[Connection], Any]], Any]) -> None:
        super().__init__(transaction, POSTGRES)
        self.dsn = dsn
        self.busy_timeout = timeout

    def _connect(self) -> OwnConnection:
        return SqliteLike(connect(self.dsn, self.busy_timeout))

    def _usable(self, conn: OwnConnection) -> bool:
        # A server restart or a lost network leaves the connection closed or broken: open another.
        return isinstance(conn, SqliteLike) and not (conn.conn.closed or conn.conn.broken)

    def _storage_error(self, error: Exception) -> StorageError | None:
        return unavailable(error, self.dsn) if isinstance(error, psycopg.Error) else None
