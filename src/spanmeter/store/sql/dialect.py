"""What differs between the store's SQL on SQLite and on PostgreSQL: a `Dialect` per backend.

The store's statements are written once (the SQLite backend's parts in store/sqlite/, which the
PostgreSQL backend runs too), so both backends answer with the same numbers by construction.
Most are in SQL both accept: the upserts name their conflict target and qualify the stored row's
columns with the table; the larger of two values is a CASE, a comparison counted is a CASE, a
parameter that may be NULL is CAST to its type. Where the two differ, the statement is built for
its backend from that backend's dialect (store/sqlite/dialect.py SQLITE, store/postgres/dialect.py
POSTGRES), which says:

- how a transaction begins: a read on one snapshot, a write holding the store's write lock;
- the query API's item JSON of a records row (SQLite builds it; PostgreSQL leaves it to Python);
- the text value of a JSON object's entry by key, and a JSON object's entries or a JSON array's
  elements as rows of text (the meta and tag filters, grouping by a meta key);
- the position of a text in another (0 for none);
- an ascending sort key with NULLs first (SQLite's place for NULL);
- the UTC month ('YYYY-MM') of a time in seconds;
- the schema's column types (SQLite's 64-bit INTEGER, its bytewise TEXT) and table options.

Parameters are `?` in every statement; the PostgreSQL connection hands them to psycopg as `%s`
(store/postgres/dialect.py `psycopg_markers`), the one change made to a statement as it is sent.

The read parts (queries, meter queries, API keys, the outbox) take their backend's dialect when
they are made, and each migration builds its tables with it; the rollups that the writers keep
(new_records.py) are in SQL both accept, so a writer needs none. A new statement that runs on
both backends is written either way; the store's tests run on both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Dialect(ABC):
    """The SQL fragments that differ between the store's backends."""

    name: str
    # a read transaction on one snapshot (what a read of several statements sees agrees)
    begin_read: str
    # a write transaction holding the store's write lock (its one writer at a time)
    begin_write: str
    # the query API's item JSON of a `records` row, or NULL where Python builds it (item_sql.py)
    item_json: str
    # schema: a 64-bit integer column's type, a text column's (compared bytewise), and what
    # follows a CREATE TABLE's closing parenthesis
    integer: str
    text: str
    table_options: str

    @abstractmethod
    def json_value(self, document: str, key: str) -> tuple[str, list[Any]]:
        """SQL of the text value of the JSON object `document`'s entry `key` (NULL for none), and
        its parameters. On SQLite `key` may hold neither '"' nor '\\' (a JSON path label)."""

    @abstractmethod
    def object_entries(self, document: str, alias: str) -> str:
        """A FROM item `alias` of the JSON object `document`'s entries: columns key and value, as
        text (no rows for NULL)."""

    @abstractmethod
    def array_elements(self, document: str, alias: str) -> str:
        """A FROM item `alias` of the JSON array `document`'s elements: column value, as text (no
        rows for NULL)."""

    @abstractmethod
    def position(self, text: str, part: str) -> str:
        """The 1-based position of `part` in `text`, 0 when it is not there."""

    @abstractmethod
    def nulls_first(self, key: str) -> str:
        """An ascending ORDER BY key that sorts NULL before every value, as SQLite does."""

    @abstractmethod
    def month_of(self, seconds: str) -> str:
        """The UTC month ('YYYY-MM') of a time in seconds since the epoch (SQL too)."""
