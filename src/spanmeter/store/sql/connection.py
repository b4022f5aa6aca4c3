"""What the shared SQL parts need of a backend's connection: sqlite3's `execute` and
`executemany`, `?` parameter markers included (the PostgreSQL backend wraps psycopg's connection
in the same shape, store/postgres/connection.py), and `Fetch`, how the read parts run a query."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

# Runs a read query and returns its rows: what the read parts are given (a store's `_fetch`).
Fetch = Callable[[str, list[Any]], list[tuple[Any, ...]]]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection the shared statements run on, in the caller's transaction."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...


class OwnConnection(Connection, Protocol):
    """A connection its user opened for itself, and closes."""

    def close(self) -> None: ...
