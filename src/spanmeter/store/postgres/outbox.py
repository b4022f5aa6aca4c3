"""The outbox on PostgreSQL (store/sql/outbox.py): claims read on a connection of their own (a
repeatable-read snapshot), changes in the store's write transactions (`transaction`, holding the
write lock); psycopg's errors told as StorageError (the database unavailable)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from spanmeter.errors import StorageError
from spanmeter.store.postgres.connection import SqliteLike, connect, unavailable
from spanmeter.store.postgres.dialect import POSTGRES
from spanmeter.store.sql.connection import Connection
from spanmeter.store.sql.outbox import SQLOutbox


class PostgresOutbox(SQLOutbox):
    def __init__(self, dsn: str, timeout: float, transaction: Callable[[Callable[[Connection], Any]], Any]) -> None:
        super().__init__(transaction, POSTGRES)
        self.dsn = dsn
        self.busy_timeout = timeout
        self._db: SqliteLike | None = None
        self._db_lock = threading.Lock()

    def _outbox(self) -> tuple[Connection, threading.Lock]:
        if self._db is None or self._db.conn.closed or self._db.conn.broken:
            self._db = SqliteLike(connect(self.dsn, self.busy_timeout))
        return self._db, self._db_lock

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _storage_error(self, error: Exception) -> StorageError | None:
        return unavailable(error, self.dsn) if isinstance(error, psycopg.Error) else None
