"""The store's shared SQL on PostgreSQL: the statements written for SQLite, translated.

The query API's pages and filters, the rollups, the meter queries, API keys and the outbox are
written once (the SQLite backend's parts) and run here through `translate`, so both backends
answer with the same numbers by construction; the tests run every store behaviour on both.
What differs between the two dialects, for the statements the store uses:

- parameters: `?` becomes `%s` (and a literal `%` becomes `%%`);
- an `ON CONFLICT DO UPDATE` without a conflict target (the adoption rollups' upserts) names the
  table's primary key, and the existing row's columns in the update are qualified with the table
  (PostgreSQL finds them ambiguous beside `excluded`); SQLite's two-argument `max(a, b)` there
  becomes `GREATEST(a, b)` (which, unlike SQLite's, ignores a NULL: the statements wrap it in
  COALESCE for SQLite, the same result). The other upserts are written in the SQL both accept
  (`ON CONFLICT (primary key) DO UPDATE SET c = table.c + excluded.c`, `ON CONFLICT DO
  NOTHING`), and pass unchanged;
- `instr`, `json_extract(text, '$."key"')` and `json_each(text)` (the meta and tag filters)
  become PostgreSQL functions or the functions this backend creates (FUNCTIONS);
- a comparison selected as a value is a number (0 or 1), as in SQLite;
- `ORDER BY` puts NULLs below every value, as SQLite does;
- the query API's item JSON, which SQLite builds with its JSON functions, is built in Python;
- schema: INTEGER is BIGINT (SQLite integers are 64-bit), TEXT compares bytewise (COLLATE "C",
  SQLite's BINARY collation) and `WITHOUT ROWID` goes;
- `BEGIN` takes a repeatable-read snapshot (SQLite's read transactions are snapshots) and
  `BEGIN IMMEDIATE` takes the store's write lock (SQLite's single writer: see records.py).

Not translated, because each is written for both: the upserts of the daily, per-model, meter and
attention rollups and of the outbox (SQL both accept), the month of a meter query (parts.py
PostgresAggregate), the records' insert (records.py) and the migrations' indexes (migrations.py).
"""

from __future__ import annotations

import functools
import re
from typing import Final

from spanmeter.store.sqlite.item_sql import ITEM_JSON

# Serialises the store's writes, as SQLite's one write lock does (records.py says why).
WRITE_LOCK: Final = 0x5350414E4D455452  # "SPANMETR"
MIGRATION_LOCK: Final = WRITE_LOCK + 1

FUNCTIONS: Final = (
    # json_extract(meta, '$."key"') of SQLite, for the object keys the store asks for.
    ("CREATE OR REPLACE FUNCTION spanmeter_json_extract(document TEXT, path TEXT) RETURNS TEXT"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT (document::jsonb) ->> substr(path, 4, length(path) - 4) $$"),
    # json_each(text) of SQLite, for an object's entries or an array's elements, as text.
    ("CREATE OR REPLACE FUNCTION spanmeter_json_each(document TEXT) RETURNS TABLE (key TEXT, value TEXT)"
    " LANGUAGE sql IMMUTABLE AS $$"
    " SELECT e.key, e.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(document::jsonb) = 'object'"
    "  THEN document::jsonb END) AS e"
    " UNION ALL SELECT (a.n - 1)::text, a.value FROM jsonb_array_elements_text(CASE WHEN"
    "  jsonb_typeof(document::jsonb) = 'array' THEN document::jsonb END) WITH ORDINALITY AS a(value, n) $$"),
)

_TABLE: Final = re.compile(r"INSERT INTO (\w+)")
_ASSIGNMENT: Final = re.compile(r"(\w+) = (.+?)(?=, \w+ = |$)")
_BARE_NAME: Final = re.compile(r"(?<![.\w'])([a-z_][a-z0-9_]*)\b(?![.(\w])")
# A comparison selected as a value (adoption's family counts): SQLite's is 0 or 1, PostgreSQL's boolean.
_COMPARISON_AS_NUMBER: Final = re.compile(r"(?<!WHEN )(?<!AND )(?<!WHERE )\b(event_family = '\w+')(?=,| FROM)")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The PostgreSQL statement of a SQLite statement of the store (cached: statements repeat)."""
    stripped = sql.strip()
    if stripped == "BEGIN":
        return "BEGIN ISOLATION LEVEL REPEATABLE READ"
    if stripped == "BEGIN IMMEDIATE":
        return f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    if stripped.startswith(("CREATE TABLE", "ALTER TABLE")):
        return _schema(sql)
    # The query API's item JSON is built by SQLite's JSON functions; here by Python (NULL: the
    # caller's item_of builds it, as for the rows SQLite cannot format).
    sql = sql.replace(ITEM_JSON, "NULL::text")
    sql = sql.replace("json_extract(", "spanmeter_json_extract(").replace("json_each(", "spanmeter_json_each(")
    sql = sql.replace("instr(", "strpos(")
    sql = _COMPARISON_AS_NUMBER.sub(r"(\1)::int", sql)
    if (table := _TABLE.match(sql)) is not None:
        sql = _upsert(sql, table.group(1))
    sql = _order_nulls_as_sqlite(sql)
    sql = sql.replace("? IS NULL", "?::text IS NULL")  # a NULL parameter has no type of its own
    return sql.replace("%", "%%").replace("?", "%s")


def _order_nulls_as_sqlite(sql: str) -> str:
    """Each ORDER BY key with SQLite's place for NULL: below every value (first ascending, last
    descending)."""
    out, at = [], 0
    while (start := sql.find("ORDER BY ", at)) >= 0:
        start += len("ORDER BY ")
        out.append(sql[at:start])
        depth, end, keys, key_start = 0, start, [], start
        while end < len(sql):
            char = sql[end]
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                keys.append(sql[key_start:end].strip())
                key_start = end + 1
            elif depth == 0 and sql.startswith(" LIMIT ", end):
                break
            end += 1
        keys.append(sql[key_start:end].strip())
        out.append(", ".join(f"{k} NULLS LAST" if k.endswith(" DESC") else f"{k} NULLS FIRST" for k in keys))
        at = end
    out.append(sql[at:])
    return "".join(out)


def _upsert(sql: str, table: str) -> str:
    head, found, updates = sql.partition("ON CONFLICT DO UPDATE SET ")
    if not found:
        return sql
    qualified = ", ".join(
        f"{column} = {_BARE_NAME.sub(lambda n: f'{table}.{n.group(1)}', value.replace('max(', 'GREATEST('))}"
        for column, value in _ASSIGNMENT.findall(updates)
    )
    return f"{head}ON CONFLICT ON CONSTRAINT {table}_pkey DO UPDATE SET {qualified}"



def _schema(sql: str) -> str:
    sql = sql.replace(" WITHOUT ROWID", "")
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
