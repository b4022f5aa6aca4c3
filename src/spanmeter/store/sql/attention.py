"""Counts that need an operator's attention, stored so that a restart does not reset them.

    attention_counts (workspace, name) -> count, since the database was created

- `unknown_model`: records stored without a price because their model is not priced
  (`costSource` unknown); added in the writer's transaction with the records themselves, and
  filled from the records already stored when the table is created;
- `rejected_spans`: spans (or log records) refused for invalid values, answered through OTLP
  partial success, and records the store refused (a value it cannot hold); added in the
  writer's transaction with the request's records (`rejected_counts`): both or neither.

Prometheus' `spanmeter_unknown_model_records_total` and `spanmeter_rejected_spans_total` count the
same since the process started; the dashboard shows these (store/port.py AttentionCounts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from spanmeter.record import UsageRecord
from spanmeter.store.base import Rejected
from spanmeter.store.sql.connection import Connection, Fetch
from spanmeter.store.sql.dialect import Dialect

UNKNOWN_MODEL: Final = "unknown_model"
REJECTED_SPANS: Final = "rejected_spans"



def schema(d: Dialect) -> tuple[str, ...]:
    return (
        (
            f"CREATE TABLE attention_counts (workspace {d.text} NOT NULL, name {d.text} NOT NULL,"
            f" count {d.integer} NOT NULL, PRIMARY KEY (workspace, name)){d.table_options}"
        ),
    )


BACKFILL: Final = (
    (
        f"INSERT INTO attention_counts SELECT workspace, '{UNKNOWN_MODEL}', COUNT(*) FROM records"
        " WHERE cost_source = 'unknown' GROUP BY workspace"
    ),
)
_ADD: Final = (
    "INSERT INTO attention_counts (workspace, name, count) VALUES (?, ?, ?)"
    " ON CONFLICT (workspace, name) DO UPDATE SET count = attention_counts.count + excluded.count"
)


def add_counts(conn: Connection, counts: Iterable[tuple[str, str, int]]) -> None:
    """Add (workspace, name, count) triples, in the caller's transaction."""
    if rows := [row for row in counts if row[2]]:
        conn.executemany(_ADD, rows)


def rejected_counts(rejected: Rejected | None, refused: Iterable[tuple[UsageRecord, str]]) -> list[tuple[str, str, int]]:
    """The (workspace, name, count) triples of a request's rejected spans and of its records the
    store refused (`WriteResult.refused`), for `add_counts` in its records' transaction."""
    counts: dict[str, int] = {}
    if rejected is not None:
        counts[rejected.workspace] = rejected.count
    for record, _why in refused:
        counts[record.workspace] = counts.get(record.workspace, 0) + 1
    return [(workspace, REJECTED_SPANS, count) for workspace, count in counts.items()]


def count_unknown_models(conn: Connection, stored: Iterable[UsageRecord]) -> None:
    """Add newly stored records without a price for their model, in the caller's transaction."""
    by_workspace: dict[str, int] = {}
    for record in stored:
        if record.cost_source == "unknown":
            by_workspace[record.workspace] = by_workspace.get(record.workspace, 0) + 1
    if by_workspace:
        add_counts(conn, ((workspace, UNKNOWN_MODEL, n) for workspace, n in by_workspace.items()))


def read_counts(fetch: Fetch, workspace: str) -> dict[str, int]:
    """The workspace's counts, 0 for none, through a backend's read queries."""
    found: dict[str, int] = dict(fetch("SELECT name, count FROM attention_counts WHERE workspace = ?", [workspace]))
    return {UNKNOWN_MODEL: found.get(UNKNOWN_MODEL, 0), REJECTED_SPANS: found.get(REJECTED_SPANS, 0)}
