"""Record items (the query API's item JSON) from a page of (seq, item) rows: the text the
database built (the dialect's `item_json`: SQLite builds it, store/sqlite/item_sql.py), else
`item_of` of the record, read only for the rows left NULL (every row on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from spanmeter.record import UsageRecord
from spanmeter.store.schema import COLUMNS, row_to_record


def complete_items(
    fetch: Callable[[str, list[Any]], Iterable[Sequence[Any]]],
    rows: Sequence[tuple[int, str | None]],
    item_of: Callable[[UsageRecord], str],
) -> list[str]:
    """Rows of (seq, item JSON or NULL) as item JSON texts: the database's, or `item_of` of the
    record where it left NULL (those records are read with `fetch(sql, params)`, only when there
    are any)."""
    missing = [seq for seq, item in rows if item is None]
    if not missing:
        return [item for _seq, item in rows if item is not None]
    found: dict[int, Any] = {
        row[0]: row_to_record(row[1:])
        for row in fetch(
            f"SELECT seq, {', '.join(COLUMNS)} FROM records WHERE seq IN ({', '.join('?' * len(missing))})", missing
        )
    }
    return [item if item is not None else item_of(found[seq]) for seq, item in rows]
