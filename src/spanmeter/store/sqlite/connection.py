"""Opening a connection to the database, and leaving a transaction that failed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def connect(path: str | Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), the database in WAL mode.

    Nothing here changes the `sqlite3` module for the rest of the process (no adapter or converter
    is registered): spanmeter may be embedded beside other users of it."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
