"""PostgreSQL's dialect of the store's SQL (store/sql/dialect.py says what a dialect provides).

The store's statements are written once (the SQLite backend's parts) and built for this backend
where the two differ, from POSTGRES:

- `BEGIN` of a read takes a repeatable-read snapshot (SQLite's read transactions are snapshots);
  a write takes the store's write lock, an advisory lock held to the commit (SQLite's single
  writer: see records.py);
- the query API's item JSON, which SQLite builds with its JSON functions, is built in Python
  (NULL here: the caller's item_of builds it, as for the rows SQLite cannot format);
- a meta entry by key is `meta::jsonb ->> key` (any key: no JSON path to spell; sorted bytewise
  as SQLite sorts text), a JSON object's entries `jsonb_each_text`, an array's elements
  `jsonb_array_elements_text`; SQLite's `instr` is `strpos`;
- an ascending sort key says NULLS FIRST (PostgreSQL's default puts NULL last);
- schema: INTEGER is BIGINT (SQLite integers are 64-bit), TEXT compares bytewise (COLLATE "C",
  SQLite's BINARY collation), and there is no `WITHOUT ROWID`.

A statement is sent as built but for its parameter markers: `psycopg_markers` makes each `?`
psycopg's `%s`. Nothing else rewrites SQL, so a statement never changes meaning on its way (a
PostgreSQL operator spelled `?`, such as jsonb's, cannot be used: write jsonb_exists()).
"""

from __future__ import annotations

import functools
from typing import Any, Final

from spanmeter.store.sql.dialect import Dialect

# Serialises the store's writes, as SQLite's one write lock does (records.py says why).
WRITE_LOCK: Final = 0x5350414E4D455452  # "SPANMETR"
MIGRATION_LOCK: Final = WRITE_LOCK + 1

# SQLite's json_extract and json_each, which migration m005 creates: earlier versions rewrote
# those calls into these. No statement uses them now; the migration stays as it was applied.
FUNCTIONS: Final = (
    ("CREATE OR REPLACE FUNCTION spanmeter_json_extract(document TEXT, path TEXT) RETURNS TEXT"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT (document::jsonb) ->> substr(path, 4, length(path) - 4) $$"),
    ("CREATE OR REPLACE FUNCTION spanmeter_json_each(document TEXT) RETURNS TABLE (key TEXT, value TEXT)"
    " LANGUAGE sql IMMUTABLE AS $$"
    " SELECT e.key, e.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(document::jsonb) = 'object'"
    "  THEN document::jsonb END) AS e"
    " UNION ALL SELECT (a.n - 1)::text, a.value FROM jsonb_array_elements_text(CASE WHEN"
    "  jsonb_typeof(document::jsonb) = 'array' THEN document::jsonb END) WITH ORDINALITY AS a(value, n) $$"),
)


class PostgresDialect(Dialect):
    name = "postgres"
    begin_read = "BEGIN ISOLATION LEVEL REPEATABLE READ"
    begin_write = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    item_json = "NULL::text"
    integer = "BIGINT"
    text = 'TEXT COLLATE "C"'
    table_options = ""

    def json_value(self, document: str, key: str) -> tuple[str, list[Any]]:
        # ?::text: psycopg sends a str of unknown type, and ->> takes text or an int; "C": sorted
        # bytewise as the text columns are, whatever the database's default collation
        return f'({document}::jsonb ->> ?::text) COLLATE "C"', [key]

    def object_entries(self, document: str, alias: str) -> str:
        return f"jsonb_each_text({document}::jsonb) AS {alias}"

    def array_elements(self, document: str, alias: str) -> str:
        return f"jsonb_array_elements_text({document}::jsonb) AS {alias}(value)"

    def position(self, text: str, part: str) -> str:
        return f"strpos({text}, {part})"

    def nulls_first(self, key: str) -> str:
        return f"{key} NULLS FIRST"

    def month_of(self, seconds: str) -> str:
        return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM')"


POSTGRES: Final = PostgresDialect()


@functools.lru_cache(maxsize=1024)  # statements repeat
def psycopg_markers(sql: str) -> str:
    """`sql` with psycopg's parameter markers: each `?` outside a quoted literal or name becomes
    `%s`, and each `%` becomes `%%` (psycopg reads `%` everywhere, quoted or not). For a
    statement sent with parameters: psycopg sends one without them as it is."""
    out: list[str] = []
    quote = ""  # the quote character of the literal or name being read, if any
    for char in sql:
        if quote:
            if char == quote:  # an end, or the first of a doubled quote: its second reopens
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)
