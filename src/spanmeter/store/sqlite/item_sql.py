"""A stored record as the query API's item JSON (`encoding.py: item_json`), built by SQLite itself.

An exporter sends thousands of records a second from the same process (and CPU) as ingest.
Through Python (row → UsageRecord → item dict → json.dumps) that cost ~60 µs per record, more
than ingesting it; SQLite's JSON functions build the same item in C. `json_patch('{}', ...)`
drops the absent (NULL) values, as item_json leaves them out.

Rows whose values SQL cannot format exactly like Python (a quantity in exponent or negative
notation, a time before 1970) get NULL here and are built by item_json (`needs_python`).
tests/store/test_item_sql.py checks both give the same JSON for generated records.
"""

from __future__ import annotations

from typing import Final

from pydantic.alias_generators import to_camel

from spanmeter.store.schema import COLUMNS, PRODUCT_COLUMNS

# A plain decimal string ('2.50', '1000'): SQL normalises it as decimal_string does ('2.5').
_PLAIN_QUANTITY: Final = "(quantity IS NULL OR (quantity NOT GLOB '*[^0-9.]*' AND quantity GLOB '[0-9]*'))"
NEEDS_PYTHON: Final = f"NOT ({_PLAIN_QUANTITY} AND occurred_at >= 0 AND received_at >= 0)"
_QUANTITY: Final = "CASE WHEN instr(quantity, '.') THEN rtrim(rtrim(quantity, '0'), '.') ELSE quantity END"


# count_of: total tokens (llm), the quantity as a JSON number (meter), else 1
_COUNT: Final = (
    "CASE kind WHEN 'llm' THEN COALESCE(total_tokens, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))"
    f" WHEN 'meter' THEN COALESCE(json({_QUANTITY}), 1) ELSE 1 END"
)


def _time(column: str) -> str:
    """format_ns: RFC 3339 UTC with microseconds (truncated)."""
    return (
        f"strftime('%Y-%m-%dT%H:%M:%S', {column} / 1000000000, 'unixepoch')"
        f" || printf('.%06dZ', ({column} % 1000000000) / 1000)"
    )


def _money(column: str) -> str:
    """decimal_string(from_nano(n)): exact, no exponent, no trailing zeros."""
    return (
        f"CASE WHEN {column} IS NOT NULL THEN rtrim(rtrim(printf('%s%d.%09d', CASE WHEN {column} < 0 THEN '-' ELSE ''"
        f" END, abs({column}) / 1000000000, abs({column}) % 1000000000), '0'), '.') END"
    )


def _value(column: str) -> tuple[str, str] | None:
    """(item key, SQL value) of one column; None for columns with another place in the item."""
    if column in PRODUCT_COLUMNS or column == "received_at":
        return None
    if column == "occurred_at":
        return "occurredAt", _time(column)
    if column in ("cost_usd_nano", "reported_cost_usd_nano"):
        return to_camel(column.removesuffix("_nano")), _money(column)
    if column == "quantity":
        return "quantity", _QUANTITY
    if column == "tags":
        return "tags", "json(tags)"
    if column == "meta":
        return "meta", "json(COALESCE(meta, '{}'))"
    return to_camel(column), column


def _item_sql() -> str:
    pairs = [pair for pair in map(_value, COLUMNS) if pair is not None]
    empty = "''"  # as row_to_record: a product of empty (or no) values is no product
    product = ", ".join(f"'{to_camel(c.removeprefix('product_'))}', {c}" for c in PRODUCT_COLUMNS)
    pairs += [
        ("createdAt", _time("received_at")),
        ("updatedAt", _time("received_at")),
        ("product", f"CASE WHEN {' OR '.join(f'{c} <> {empty}' for c in PRODUCT_COLUMNS)} THEN json_object({product}) END"),
        ("count", _COUNT),
    ]
    fields = ", ".join(f"'{key}', {value}" for key, value in pairs)
    return f"CASE WHEN {NEEDS_PYTHON} THEN NULL ELSE json_patch('{{}}', json_object({fields})) END"


# The item JSON of the row, or NULL when item_json must build it.
ITEM_JSON: Final = _item_sql()
