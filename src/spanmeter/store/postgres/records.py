"""Records into PostgreSQL: one transaction per batch, idempotent, with the rollups (daily,
adoption, per model) and the unknown-model count, as on SQLite.

Every write transaction takes the store's write lock (a transaction-level advisory lock) before
it inserts, and holds it until it commits, as SQLite's single writer does. That is what keeps
`seq` in commit order across every instance on the database: a transaction that took seq 10
commits before any transaction can take seq 11, so a reader or an exporter that has seen seq 11
has seen seq 10 (PostgreSQL makes a commit visible before it releases the transaction's locks).
Without it, a writer that took seq 10 and committed after another's seq 11 was read would be
passed over for good by a page cursor or an exporter position (docs/scaling.md). The lock costs
little: each instance batches the records of concurrent requests into one transaction, and the
daily rollup row of a workspace would serialise its writers anyway.

Records go in with one `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING
id`; the keys already stored are read back to count duplicates and conflicts as SQLite does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from spanmeter.record import UsageRecord
from spanmeter.store.base import WriteResult
from spanmeter.store.postgres.connection import Translated
from spanmeter.store.postgres.dialect import WRITE_LOCK
from spanmeter.store.schema import COLUMNS, CONTENT_COLUMNS, column_type, record_to_row
from spanmeter.store.sqlite import attention, model_rollup
from spanmeter.store.sqlite.adoption_rollup import roll_up_adoption
from spanmeter.store.sqlite.rollup import roll_up

_ARRAYS: Final = ", ".join(
    f"%s::{'bigint' if column_type(c) == 'INTEGER' else 'text'}[]" for c in COLUMNS
)
_INSERT: Final = (
    f"INSERT INTO records ({', '.join(COLUMNS)}) SELECT * FROM unnest({_ARRAYS})"
    " ON CONFLICT (workspace, idempotency_key) DO NOTHING RETURNING id"
)
_STORED: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM records WHERE (workspace, idempotency_key) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[]))"
)
_ID_AT: Final = COLUMNS.index("id")
_COST_AT: Final = COLUMNS.index("cost_usd_nano")
_WORKSPACE_AT: Final = COLUMNS.index("workspace")
_KEY_AT: Final = COLUMNS.index("idempotency_key")
_CONTENT_AT: Final = tuple(COLUMNS.index(c) for c in CONTENT_COLUMNS)


def begin(db: Translated) -> None:
    """Begin a write transaction holding the store's write lock (see the module docstring): one
    round trip for both."""
    db.conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")


def insert(db: Translated, batches: Sequence[list[UsageRecord]]) -> list[WriteResult]:
    """Insert each batch's records (in the caller's transaction, holding the write lock); each
    batch's result, duplicates and conflicts counted against the stored records and the batch's
    earlier ones."""
    results = [WriteResult() for _ in batches]
    winners: dict[tuple[str, str], tuple[Any, ...]] = {}  # the row each key ends with
    rows: list[tuple[Any, ...]] = []
    owners: list[tuple[WriteResult, UsageRecord]] = []
    repeats: list[tuple[WriteResult, tuple[Any, ...]]] = []
    for result, records in zip(results, batches, strict=True):
        for record in records:
            key = (record.workspace, record.idempotency_key)
            row = record_to_row(record)
            if key in winners:
                repeats.append((result, row))
            else:
                winners[key] = row
                rows.append(row)
                owners.append((result, record))
    if not rows:
        return results
    columns = [list(column) for column in zip(*rows, strict=True)]
    inserted = {record_id for (record_id,) in db.conn.execute(_INSERT, columns).fetchall()}
    stored: dict[tuple[str, str], tuple[Any, ...]] = {}
    if len(inserted) < len(rows):
        taken = [row for row in rows if row[_ID_AT] not in inserted]
        found = db.conn.execute(_STORED, [[r[_WORKSPACE_AT] for r in taken], [r[_KEY_AT] for r in taken]])
        stored = {(row[_WORKSPACE_AT], row[_KEY_AT]): tuple(row) for row in found}
    new: list[tuple[UsageRecord, int | None]] = []
    for row, (result, record) in zip(rows, owners, strict=True):
        if row[_ID_AT] in inserted:
            result.inserted.append(record)
            new.append((record, row[_COST_AT]))
        else:
            key = (row[_WORKSPACE_AT], row[_KEY_AT])
            winners[key] = stored[key]
            _count_duplicate(result, stored[key], row)
    for result, row in repeats:
        _count_duplicate(result, winners[(row[_WORKSPACE_AT], row[_KEY_AT])], row)
    roll_up(db, new)  # type: ignore[arg-type]  # the shared rollups, through the translating connection
    roll_up_adoption(db, (record for record, _ in new))  # type: ignore[arg-type]
    model_rollup.roll_up_models(db, new)  # type: ignore[arg-type]
    attention.count_unknown_models(db, (record for record, _ in new))  # type: ignore[arg-type]
    return results


def _count_duplicate(result: WriteResult, stored: tuple[Any, ...], row: tuple[Any, ...]) -> None:
    result.duplicates += 1
    if any(stored[i] != row[i] for i in _CONTENT_AT):
        result.conflicts += 1
