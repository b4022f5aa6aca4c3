"""The shared store parts (the SQLite backend's classes) on PostgreSQL connections.

Each builds its SQL in PostgreSQL's dialect (dialect.py POSTGRES); what differs besides is only
where a part gets a connection and the idempotency-key lookup (PostgreSQL has a plain unique
index on (workspace, key)). The meter queries are the shared SQLAggregate in that dialect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from spanmeter.store.postgres.connection import SqliteLike, connect, unavailable
from spanmeter.store.postgres.dialect import POSTGRES
from spanmeter.store.queries import CsvLine, RecordQuery
from spanmeter.store.sql.connection import Fetch
from spanmeter.store.sqlite.api_keys import SQLiteKeys
from spanmeter.store.sqlite.outbox import SQLiteOutbox
from spanmeter.store.sqlite.queries import SQLiteQueries


class PostgresQueries(SQLiteQueries):
    def __init__(self, fetch: Fetch) -> None:
        super().__init__(fetch, POSTGRES)

    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        rows = self._fetch("SELECT id FROM records WHERE workspace = ? AND idempotency_key = ?",
                           [workspace, idempotency_key])
        return str(rows[0][0]) if rows else None

    def query_csv_lines(self, query: RecordQuery, line: CsvLine) -> None:
        return None  # the lines' SQL is SQLite's (datetime, GLOB): the export writes them


class PostgresKeys(SQLiteKeys):
    """Each change on a connection of its own, as on SQLite (keys change rarely: the CLI)."""

    def __init__(self, dsn: str, timeout: float, fetch: Fetch) -> None:
        super().__init__(Path(), timeout, fetch, POSTGRES)
        self.dsn = dsn

    def _write_connection(self) -> SqliteLike:  # type: ignore[override]  # a sqlite3.Connection's interface
        return SqliteLike(connect(self.dsn, self.busy_timeout))


class PostgresOutbox(SQLiteOutbox):
    """Claims read on a connection of their own (a repeatable-read snapshot); changes in the
    store's write transactions (`transaction`, holding the write lock)."""

    def __init__(self, dsn: str, timeout: float, transaction: Callable[[Callable[[Any], Any]], Any]) -> None:
        super().__init__(Path(), timeout, transaction, POSTGRES)
        self.dsn = dsn
        self._db: SqliteLike | None = None
        self._db_lock = threading.Lock()

    def _outbox(self) -> tuple[SqliteLike, threading.Lock]:  # type: ignore[override]
        if self._db is None or self._db.conn.closed or self._db.conn.broken:
            self._db = SqliteLike(connect(self.dsn, self.busy_timeout))
        return self._db, self._db_lock

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def release(self, exporter: str, owner: str) -> None:
        try:
            super().release(exporter, owner)
        except psycopg.Error as error:  # callers catch the backend-neutral StorageError
            raise unavailable(error, self.dsn) from error
