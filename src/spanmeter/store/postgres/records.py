"""Records into PostgreSQL: one transaction per batch, idempotent, with the rollups (daily,
adoption, per model), the unknown-model count and the requests' rejected-span counts, as on SQLite.

Every write transaction takes the store's write lock (a transaction-level advisory lock) before
it inserts, and holds it until it commits, as SQLite's single writer does. That is what keeps
`seq` in commit order across every instance on the database: a transaction that took seq 10
commits before any transaction can take seq 11, so a reader or an exporter that has seen seq 11
has seen seq 10 (PostgreSQL makes a commit visible before it releases the transaction's locks).
Without it, a writer that took seq 10 and committed after another's seq 11 was read would be
passed over for good by a page cursor or an exporter position (docs/scaling.md). What the lock
costs is how long it is held, so a batch's transaction is one round trip (`write`): the server
runs it whole as soon as it grants the lock. Each instance batches the records of concurrent
requests into one transaction, and the daily rollup row of a workspace would serialise its
writers anyway.

Records go in with `INSERT ... SELECT FROM jsonb_array_elements(rows)` (one per 5,000 rows): the
rows are one JSON parameter, so psycopg sends one value and parses the statement once (it
re-parses a statement of more than 50 parameters at every call; that and dumping 55 column
arrays were half the writer's CPU per transaction: bench/pg_writer.py). The careful way
(`insert`) adds `ON CONFLICT DO NOTHING RETURNING id` and reads the keys already stored back to
count duplicates and conflicts as SQLite does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

import psycopg
from psycopg import pq

from spanmeter.record import UsageRecord
from spanmeter.store.base import WriteResult
from spanmeter.store.postgres.connection import SqliteLike
from spanmeter.store.postgres.dialect import WRITE_LOCK
from spanmeter.store.schema import COLUMNS, CONTENT_COLUMNS, column_type, record_to_row
from spanmeter.store.sql import attention
from spanmeter.store.sql.new_records import roll_up_new

# The rows go as one JSON array of arrays (one value to send, a statement psycopg parses once),
# read back with each value's column type: JSON numbers and text are exact (bigint, decimal text).
_VALUES: Final = ", ".join(
    f"(r->>{i})::bigint" if column_type(c) == "INTEGER" else f"r->>{i}" for i, c in enumerate(COLUMNS)
)
_INSERT_NEW: Final = (
    f"INSERT INTO records ({', '.join(COLUMNS)}) SELECT {_VALUES} FROM jsonb_array_elements(%s::jsonb) r"
)
_INSERT: Final = f"{_INSERT_NEW} ON CONFLICT (workspace, idempotency_key) DO NOTHING RETURNING id"
# Rows per INSERT: the writer takes everything queued (up to max_queued_records) in one
# transaction, and a jsonb value holds at most 256 MB.
_CHUNK_ROWS: Final = 5_000
_KEY_CONSTRAINT: Final = "records_workspace_idempotency_key_key"  # UNIQUE (workspace, idempotency_key)
_STORED: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM records WHERE (workspace, idempotency_key) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[]))"
)
_LOCK: Final = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
_ID_AT: Final = COLUMNS.index("id")
_COST_AT: Final = COLUMNS.index("cost_usd_nano")
_WORKSPACE_AT: Final = COLUMNS.index("workspace")
_KEY_AT: Final = COLUMNS.index("idempotency_key")
_CONTENT_AT: Final = tuple(COLUMNS.index(c) for c in CONTENT_COLUMNS)


def begin(db: SqliteLike) -> None:
    """Begin a write transaction holding the store's write lock (see the module docstring): one
    round trip for both; in pipeline mode (`write`), none of its own."""
    if db.conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:  # one statement per query there
        db.conn.execute("BEGIN")
        db.conn.execute(_LOCK)
    else:
        db.conn.execute(f"BEGIN; {_LOCK}")


def write(
    db: SqliteLike,
    batches: Sequence[list[UsageRecord]],
    *,
    expect_new: bool,
    counts: Sequence[tuple[str, str, int]] = (),
) -> list[WriteResult]:
    """Commit each batch's records in one transaction holding the write lock; each batch's result.
    `counts`: attention counts (the requests' rejected spans) added in the same transaction.

    With `expect_new` (the writer's guess that no key of these records is stored yet, true unless
    its last batch held duplicates) the whole transaction is one pipeline, one round trip: BEGIN,
    the lock, a plain INSERT (no ON CONFLICT), the rollups' writes for every record, COMMIT. The
    server runs them back to back as soon as it grants the lock, so the lock is held for the
    server's work only, never across a round trip to this process (which, besides the network,
    may wait for a CPU or Python's GIL first). A key that is stored already fails the INSERT with
    a unique violation: the transaction rolls back, nothing of it was written, and the records go
    again the careful way. That way (`insert`: ON CONFLICT DO NOTHING RETURNING, duplicates read
    back, rollups for the new records only) takes two round trips under the lock, or three
    when the rollups read (conversations, meters) or some keys were stored.
    """
    if expect_new:
        try:
            return _commit(db, batches, _insert_new, counts)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != _KEY_CONSTRAINT:
                raise
            db.conn.execute("ROLLBACK")
    return _commit(db, batches, _insert, counts)


def _commit(
    db: SqliteLike,
    batches: Sequence[list[UsageRecord]],
    insert: Callable[[SqliteLike, _Plan], list[WriteResult]],
    counts: Sequence[tuple[str, str, int]],
) -> list[WriteResult]:
    # The rows and their JSON first: once BEGIN and the lock are sent, every other instance's
    # writes wait until COMMIT, and this thread may have to wait for Python's GIL as well.
    plan = _Plan(batches)
    with db.conn.pipeline():  # statements go without waiting for their results: a read waits
        begin(db)
        results = insert(db, plan)
        attention.add_counts(db, counts)
        db.conn.execute("COMMIT")
    return results


def _insert_new(db: SqliteLike, plan: _Plan) -> list[WriteResult]:
    """`insert` for records whose keys are not stored: all of them inserted, their rollups added,
    and nothing read back; a stored key fails it with a unique violation on _KEY_CONSTRAINT."""
    for payload in plan.payloads:
        db.conn.execute(_INSERT_NEW, [payload])
    plan.settle(db, None, {})
    return plan.results


def insert(db: SqliteLike, batches: Sequence[list[UsageRecord]]) -> list[WriteResult]:
    """Insert each batch's records (in the caller's transaction, holding the write lock); each
    batch's result, duplicates and conflicts counted against the stored records and the batch's
    earlier ones."""
    return _insert(db, _Plan(batches))


def _insert(db: SqliteLike, plan: _Plan) -> list[WriteResult]:
    if not plan.rows:
        return plan.results
    inserted = {
        record_id for payload in plan.payloads for (record_id,) in db.conn.execute(_INSERT, [payload]).fetchall()
    }
    stored: dict[tuple[str, str], tuple[Any, ...]] = {}
    if len(inserted) < len(plan.rows):
        taken = [row for row in plan.rows if row[_ID_AT] not in inserted]
        found = db.conn.execute(_STORED, [[r[_WORKSPACE_AT] for r in taken], [r[_KEY_AT] for r in taken]])
        stored = {(row[_WORKSPACE_AT], row[_KEY_AT]): tuple(row) for row in found}
    plan.settle(db, inserted, stored)
    return plan.results


class _Plan:
    """A transaction's records: the rows to insert (each key's first), and the later repeats."""

    def __init__(self, batches: Sequence[list[UsageRecord]]) -> None:
        self.results = [WriteResult() for _ in batches]
        self.winners: dict[tuple[str, str], tuple[Any, ...]] = {}  # the row each key ends with
        self.rows: list[tuple[Any, ...]] = []
        self.owners: list[tuple[WriteResult, UsageRecord]] = []
        self.repeats: list[tuple[WriteResult, tuple[Any, ...]]] = []
        for result, records in zip(self.results, batches, strict=True):
            for record in records:
                key = (record.workspace, record.idempotency_key)
                row = record_to_row(record)
                if key in self.winners:
                    self.repeats.append((result, row))
                else:
                    self.winners[key] = row
                    self.rows.append(row)
                    self.owners.append((result, record))
        self.payloads = self._payloads()

    def _payloads(self) -> list[str]:
        """The rows as JSON texts of up to _CHUNK_ROWS rows each. PostgreSQL's text takes no NUL
        character (nor does jsonb its escape): a row holding one is refused here, with the
        message psycopg gives it."""
        texts = [json.dumps(self.rows[i : i + _CHUNK_ROWS], ensure_ascii=False) for i in range(0, len(self.rows), _CHUNK_ROWS)]
        if any("\\u0000" in text for text in texts) and any(
            isinstance(v, str) and "\x00" in v for row in self.rows for v in row
        ):
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return texts

    def settle(self, db: SqliteLike, inserted: set[str] | None, stored: dict[tuple[str, str], tuple[Any, ...]]) -> None:
        """Count each row as inserted (`inserted` None: every row) or a duplicate of its stored
        row, count the repeats, and add the new records to the rollups."""
        new: list[tuple[UsageRecord, int | None]] = []
        for row, (result, record) in zip(self.rows, self.owners, strict=True):
            if inserted is None or row[_ID_AT] in inserted:
                result.inserted.append(record)
                new.append((record, row[_COST_AT]))
            else:
                key = (row[_WORKSPACE_AT], row[_KEY_AT])
                self.winners[key] = stored[key]
                _count_duplicate(result, stored[key], row)
        for result, row in self.repeats:
            _count_duplicate(result, self.winners[(row[_WORKSPACE_AT], row[_KEY_AT])], row)
        roll_up_new(db, new)


def _count_duplicate(result: WriteResult, stored: tuple[Any, ...], row: tuple[Any, ...]) -> None:
    result.duplicates += 1
    if any(stored[i] != row[i] for i in _CONTENT_AT):
        result.conflicts += 1
