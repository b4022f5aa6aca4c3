"""The outbox on SQLite (store/sql/outbox.py): reads on a connection of its own to the database
file (WAL: beside the writer, no lock), SQLite's errors told as StorageError."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spanmeter.errors import StorageError
from spanmeter.store.sql.connection import Connection, OwnConnection
from spanmeter.store.sql.outbox import SQLOutbox
from spanmeter.store.sqlite.dialect import SQLITE
from spanmeter.store.sqlite.errors import storage_error


class SQLiteOutbox(SQLOutbox):
    def __init__(
        self, path: Path, busy_timeout: float, transaction: Callable[[Callable[[Connection], Any]], Any]
    ) -> None:
        super().__init__(transaction, SQLITE)
        self.path = path
        self.busy_timeout = busy_timeout

    def _connect(self) -> OwnConnection:
        return sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)

    def _storage_error(self, error: Exception) -> StorageError | None:
        return storage_error(error) if isinstance(error, sqlite3.Error) else None
