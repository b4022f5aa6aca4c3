"""The SQLite backend (the embedded default): one database file, one writer thread (store.py)."""

from spanmeter.store.sqlite.connection import connect
from spanmeter.store.sqlite.migrations import migrations
from spanmeter.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore", "connect", "migrations"]
