"""SQLite's dialect of the store's SQL (store/sql/dialect.py says what a dialect provides)."""

from __future__ import annotations

from typing import Any, Final

from spanmeter.store.sql.dialect import Dialect
from spanmeter.store.sqlite.item_sql import ITEM_JSON


class SQLiteDialect(Dialect):
    name = "sqlite"
    begin_read = "BEGIN"  # a read transaction's snapshot starts at its first read
    begin_write = "BEGIN IMMEDIATE"
    item_json = ITEM_JSON
    integer = "INTEGER"
    text = "TEXT"
    table_options = " WITHOUT ROWID"

    def json_value(self, document: str, key: str) -> tuple[str, list[Any]]:
        if '"' in key or "\\" in key:
            raise ValueError(f"not a JSON path label: {key!r}")
        return f"json_extract({document}, ?)", [f'$."{key}"']

    def object_entries(self, document: str, alias: str) -> str:
        return f"json_each({document}) AS {alias}"

    def array_elements(self, document: str, alias: str) -> str:
        return f"json_each({document}) AS {alias}"

    def position(self, text: str, part: str) -> str:
        return f"instr({text}, {part})"

    def nulls_first(self, key: str) -> str:
        return key  # SQLite's order: NULL first ascending

    def month_of(self, seconds: str) -> str:
        return f"strftime('%Y-%m', {seconds}, 'unixepoch')"


SQLITE: Final = SQLiteDialect()
