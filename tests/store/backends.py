"""What the store tests that run on both backends need to reach below the port: the database
itself, to put it back as an older spanmeter left it before a migration."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from spanmeter.store.port import Store


def is_postgres(store: Store) -> bool:
    return type(store).__name__ == "PostgresStore"


@contextlib.contextmanager
def database(store: Store) -> Iterator[Any]:
    """A connection of its own to the store's database, taking SQL both backends accept with `?`
    parameters; each statement committed."""
    if is_postgres(store):
        from spanmeter.store.postgres.connection import SqliteLike, connect

        conn = SqliteLike(connect(store.dsn, 5.0))  # type: ignore[attr-defined]
        try:
            yield conn
        finally:
            conn.close()
        return
    plain = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    try:
        yield plain
    finally:
        plain.close()


def undo_migration(store: Store, names: dict[str, str], *tables: str) -> None:
    """Drop `tables` and forget the migration that made them (`names`: its name per backend,
    "sqlite" and "postgres"): the database of a spanmeter from before it. The store is closed."""
    backend, applied = ("postgres", "spanmeter_migrations") if is_postgres(store) else ("sqlite", "_sqlite_migrations")
    with database(store) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE {table}")
        conn.execute(f"DELETE FROM {applied} WHERE name = ?", [names[backend]])
