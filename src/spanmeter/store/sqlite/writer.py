"""The SQLite writer: one thread owns the write connection and commits every write.

Concurrent `write` calls queue their records (store/write_queue.py); the writer takes everything
queued, commits it in one transaction (`BEGIN IMMEDIATE`, executemany `INSERT OR IGNORE`) and
only then resolves each caller's future, so an acknowledged record is on disk (WAL) and survives
`kill -9`; a request's rejected spans are counted in the same transaction (store/sql/attention.py). A bounded queue turns overload into `Overloaded` (→ 503 / UNAVAILABLE with a retry
delay) instead of unbounded memory. The other parts' small writes (the outbox, `transaction`) run in the writer's
next transaction too.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

from spanmeter.errors import StorageError
from spanmeter.record import UsageRecord
from spanmeter.store.base import WriteResult
from spanmeter.store.schema import COLUMNS, CONTENT_COLUMNS, record_to_row
from spanmeter.store.sql import attention
from spanmeter.store.sql.new_records import roll_up_new
from spanmeter.store.sqlite import key_hash
from spanmeter.store.sqlite.checkpoints import Checkpoints
from spanmeter.store.sqlite.connection import connect, rollback
from spanmeter.store.sqlite.errors import describe_value_error, environmental, reconnect, storage_error
from spanmeter.store.write_queue import Call, Job, WriteQueue

log = logging.getLogger(__name__)
T = TypeVar("T")
_Call: TypeAlias = Call[sqlite3.Connection]


def _insert_sql(columns: tuple[str, ...]) -> str:
    return f"INSERT OR IGNORE INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


# Rows are COLUMNS plus the store's own `key_hash` (store/sqlite/key_hash.py) at the end.
_ROW_COLUMNS: Final = (*COLUMNS, "key_hash")
_INSERT: Final = _insert_sql(_ROW_COLUMNS)
_SELECT_BY_HASH: Final = f"SELECT {', '.join(COLUMNS)}, key_hash FROM records WHERE key_hash IN "
_HASH_AT: Final = len(COLUMNS)
_CONTENT_AT: Final = tuple(COLUMNS.index(c) for c in CONTENT_COLUMNS)
_ID_AT: Final = COLUMNS.index("id")
_COST_AT: Final = COLUMNS.index("cost_usd_nano")
_KEY_AT: Final = (COLUMNS.index("workspace"), COLUMNS.index("idempotency_key"))
PROBE_SECONDS: Final = 1.0  # while writes fail, how often the writer tries a write of its own
PROBE_BYTES: Final = 64 * 1024  # what the probe writes: a few pages more than the database has
_LOOKUP_CHUNK: Final = 800  # key hashes per SELECT, under SQLite's parameter limit

# CPython 3.11's sqlite3 binds only int, float, str and bytearray directly; anything else, None
# included, goes through its adapter lookup (~1 µs per None, and a record row has ~35 of them).
# An adapter registered for None would speed up every statement, but it is process-wide: it
# changes `sqlite3` for anyone embedding spanmeter. So the records INSERT binds per statement
# instead: a float NaN binds directly (~0.06 µs), and SQLite stores a bound NaN as NULL
# (sqlite3_bind_double), so its rows are bound with NaN for None: -2.4 to -3.5 µs per record,
# the mapping included (measured 2026-11-30, bench/README.md "Where the time goes").
_BIND_NULL: Final = {None: float("nan")}.get


def _bindable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(map(_BIND_NULL, row, row))  # values are str, int or None: all hashable


# Columns a model call's record leaves empty (product events, meters, most relations, tags, meta).
# A batch in which all of them are empty is inserted naming only the other columns: half the
# values to bind and step through (-2 to -3 µs per record, bench/README.md); the rest default to NULL.
_RARE: Final = frozenset(
    {"email", "account_domain", "reported_cost_usd_nano", "event_name", "event_family", "product_id", "product_name",
     "product_type", "product_version", "product_category", "source", "campaign_id", "meter", "quantity", "task_id",
     "contact_id", "blueprint_id", "bot_id", "dataset_id", "skillset_id", "ability_id", "tags", "meta", "query"}
)
_RARE_AT: Final = tuple(i for i, c in enumerate(_ROW_COLUMNS) if c in _RARE)
_COMMON_AT: Final = tuple(i for i in range(len(_ROW_COLUMNS)) if i not in _RARE_AT)
_rare_of: Final = operator.itemgetter(*_RARE_AT)
_common_of: Final = operator.itemgetter(*_COMMON_AT)
_NO_RARE: Final = (None,) * len(_RARE_AT)
_INSERT_COMMON: Final = _insert_sql(tuple(_ROW_COLUMNS[i] for i in _COMMON_AT))


class Writer:
    """The writer thread and its queue: every write of the store goes through it."""

    def __init__(
        self,
        path: Path,
        checkpoints: Checkpoints,
        *,
        synchronous: str,
        max_queued_records: int,
        busy_timeout: float,
        retry_after: float,
        cache_mb: int,
    ) -> None:
        self.path = path
        self.checkpoints = checkpoints
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.cache_mb = cache_mb
        self.queue: WriteQueue[sqlite3.Connection] = WriteQueue(
            setting="storage::sqlite::max_queued_records",
            max_queued_records=max_queued_records,
            retry_after=retry_after,
        )
        # Why writes fail now (a StorageError message), None while they succeed: /readyz reports it.
        self.failure: str | None = None
        self.failure_reason: str | None = None

    def start(self) -> None:
        self.queue.start(self._run, "spanmeter-sqlite-writer")

    def stop(self) -> None:
        """Refuse new writes, commit the queued ones, and stop the thread (blocking)."""
        self.queue.stop()

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, timeout=self.busy_timeout)
        try:
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # The unique key index is written at random places: keep it in memory as the table grows.
            conn.execute(f"PRAGMA cache_size=-{self.cache_mb * 1024}")
            self.checkpoints.configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:  # while the store fails, a write probe every PROBE_SECONDS finds when it recovers
            for batch in self.queue.batches(lambda: PROBE_SECONDS if self.failure else None):
                if not batch:
                    conn = self._probe(conn)
                    continue
                conn = self._commit(conn, batch)
                if conn is not None:
                    self.checkpoints.after_commit(conn)
        finally:
            if conn is not None:
                conn.close()

    def check_writable(self) -> None:
        """Commit a write that changes nothing (blocking), or raise StorageError saying why not."""
        try:
            conn = connect(self.path, timeout=self.busy_timeout)
        except sqlite3.Error as error:
            raise storage_error(error) from None
        try:
            _probe_write(conn)
        except sqlite3.Error as error:
            raise storage_error(error) from None
        finally:
            conn.close()

    def _probe(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        try:
            conn = conn or self._open_writer()
            _probe_write(conn)
        except sqlite3.Error as error:
            self._failed(error)
            return None if reconnect(error) else conn
        self._recovered()
        return conn

    def _failed(self, error: BaseException) -> StorageError:
        failure = storage_error(error)
        if self.failure != str(failure):
            log.error("SQLite store %s: %s; writes are refused (503 / UNAVAILABLE) until it recovers", self.path, failure)
        self.failure = str(failure)
        self.failure_reason = failure.reason
        return failure

    def _recovered(self) -> None:
        if self.failure is not None:
            log.warning("SQLite store %s writes again (it failed: %s)", self.path, self.failure)
        self.failure = self.failure_reason = None

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction and return its result (blocking: call it off the event loop).

        While this process's writer runs, `fn` runs in the writer's next transaction: a second
        connection writing beside it would take turns with it for SQLite's one write lock, and a
        writer that finds the lock taken sleeps in the busy handler (milliseconds: measured with
        the webhook exporter, ingest at 1 span/request fell by a quarter). Otherwise (the CLI) on
        a connection of its own.
        """
        if self.queue.running:
            return self.queue.call(fn)
        conn = connect(self.path, timeout=self.busy_timeout)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection | None, batch: list[Job | _Call]) -> sqlite3.Connection | None:
        """Commit the batch in one transaction; the writer's connection after it (None: reopen).

        A failure of the environment (disk full, locked, read-only, I/O) fails every caller with a
        retryable StorageError. Any other failure comes from some record's value: then each
        request is written alone, so only the one holding that record is affected, and in it
        the record alone is refused (WriteResult.refused), the rest stored.
        """
        jobs = [job for job in batch if isinstance(job, Job)]
        calls: list[tuple[_Call, Any, BaseException | None]] = []
        errors: dict[int, Exception] = {}  # id(job) → its failure
        try:
            conn = conn or self._open_writer()
            calls = self._transaction(conn, jobs, [c for c in batch if isinstance(c, Call)])
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any failure, and tell every caller
            if conn is None or environmental(exc):
                log.error("SQLite write of %d records failed: %s", sum(len(j.records) for j in jobs), exc)
                error = self._failed(exc)
                errors = {id(job): error for job in jobs}
                calls = [(call, None, error) for call in batch if isinstance(call, Call)]
                if conn is not None and reconnect(exc):
                    conn.close()
                    conn = None
            else:
                log.warning("SQLite write of a batch of %d requests failed (%s): writing each alone", len(batch), exc)
                calls = []
                for item in batch:
                    if isinstance(item, Job):
                        if (job_error := self._write_alone(conn, item)) is not None:
                            errors[id(item)] = job_error
                        continue
                    try:
                        calls.extend(self._transaction(conn, [], [item]))
                    except Exception as call_error:  # noqa: BLE001 - handed to the caller
                        calls.append((item, None, self._failed(call_error)))
        if not errors and all(failure is None for _call, _result, failure in calls):
            self._recovered()
        self.checkpoints.committed(sum(len(job.result.inserted) for job in jobs if id(job) not in errors))
        self.queue.resolve([(job, errors.get(id(job), job.result)) for job in jobs])
        for call, result, failure in calls:
            if failure is not None:
                call.future.set_exception(failure)
            else:
                call.future.set_result(result)
        return conn

    def _transaction(
        self, conn: sqlite3.Connection, jobs: list[Job], calls: list[_Call]
    ) -> list[tuple[_Call, Any, BaseException | None]]:
        done: list[tuple[_Call, Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert(conn, jobs)
            attention.add_counts(conn, (c for job in jobs for c in attention.rejected_counts(job.rejected, ())))
            done = [_run_call(conn, call) for call in calls]
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)  # SQLite may have rolled back itself (disk full): its error is the one to tell
            raise
        return done

    def _write_alone(self, conn: sqlite3.Connection, job: Job) -> Exception | None:
        """One request's records in a transaction of their own: each in a savepoint, so that a
        record the store cannot hold is refused alone. Its failure, if the whole write failed."""
        result = WriteResult()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for record in job.records:
                    one = Job([record], job.loop, job.future)
                    conn.execute("SAVEPOINT spanmeter_record")
                    try:
                        self._insert(conn, [one])
                    except Exception as exc:
                        if environmental(exc):
                            raise
                        conn.execute("ROLLBACK TO spanmeter_record")
                        result.refused.append((record, describe_value_error(exc)))
                    conn.execute("RELEASE spanmeter_record")
                    result.inserted.extend(one.result.inserted)
                    result.duplicates += one.result.duplicates
                    result.conflicts += one.result.conflicts
                attention.add_counts(conn, attention.rejected_counts(job.rejected, result.refused))
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            return self._failed(exc)
        if result.refused:
            log.error(
                "%d records cannot be stored and were refused, e.g. key %r: %s",
                len(result.refused), result.refused[0][0].idempotency_key[:80], result.refused[0][1],
            )
        job.result = result
        return None

    def _insert(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        for job in jobs:
            job.result = WriteResult()
        # The row each key ends with: the first of the batch, or the one stored before it.
        winners: dict[tuple[str, str], tuple[Any, ...]] = {}
        rows: list[tuple[Any, ...]] = []
        owners: list[tuple[Job, UsageRecord]] = []
        repeats: list[tuple[Job, tuple[Any, ...]]] = []  # later rows of a key within this batch
        conflict_keys: list[str] = []
        slot = key_hash.key_hash  # looked up once per batch, not per record
        for job in jobs:
            for record in job.records:
                key = (record.workspace, record.idempotency_key)
                row = record_to_row(record) + (slot(*key),)
                if key in winners:
                    repeats.append((job, row))
                else:
                    winners[key] = row
                    rows.append(row)
                    owners.append((job, record))
        before = conn.total_changes
        if all(map(_NO_RARE.__eq__, map(_rare_of, rows))):  # in C: ~0.3 µs per row
            conn.executemany(_INSERT_COMMON, map(_bindable, map(_common_of, rows)))
        else:
            conn.executemany(_INSERT, map(_bindable, rows))
        new: list[tuple[UsageRecord, int | None]] = []
        if conn.total_changes - before == len(rows):
            for row, (job, record) in zip(rows, owners, strict=True):
                job.result.inserted.append(record)
                new.append((record, row[_COST_AT]))
        else:  # some keys were stored already (or share a hash with a stored key: see _place)
            stored = self._stored_rows(conn, [row[_HASH_AT] for row in rows])
            for row, (job, record) in zip(rows, owners, strict=True):
                existing = stored[row[_HASH_AT]]
                if existing[_ID_AT] == row[_ID_AT]:
                    inserted = True
                elif existing[_KEY_AT[0]] == row[_KEY_AT[0]] and existing[_KEY_AT[1]] == row[_KEY_AT[1]]:
                    inserted = False
                else:
                    existing, inserted = self._place(conn, row)
                if inserted:
                    job.result.inserted.append(record)
                    new.append((record, row[_COST_AT]))
                else:
                    winners[(row[_KEY_AT[0]], row[_KEY_AT[1]])] = existing
                    _count_duplicate(job.result, existing, row, conflict_keys)
        for job, row in repeats:
            _count_duplicate(job.result, winners[(row[_KEY_AT[0]], row[_KEY_AT[1]])], row, conflict_keys)
        roll_up_new(conn, new)
        if conflict_keys:
            log.warning(
                "%d duplicate records differ from the stored ones (the first stored wins), e.g. key %r",
                len(conflict_keys),
                conflict_keys[0],
            )

    def _place(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
        """A row whose hash slot holds another key: try its next probes (store/sqlite/key_hash.py).

        Returns the stored row of its key and whether it is this row (inserted) or an earlier one.
        """
        workspace, key = row[_KEY_AT[0]], row[_KEY_AT[1]]
        probe = 0
        while True:
            probe += 1
            row = row[:_HASH_AT] + (key_hash.key_hash(workspace, key, probe),)
            if conn.execute(_INSERT, row).rowcount == 1:
                return row, True
            existing = self._stored_rows(conn, [row[_HASH_AT]])[row[_HASH_AT]]
            if existing[_KEY_AT[0]] == workspace and existing[_KEY_AT[1]] == key:
                return existing, False

    def _stored_rows(self, conn: sqlite3.Connection, hashes: list[int]) -> dict[int, tuple[Any, ...]]:
        found: dict[int, tuple[Any, ...]] = {}
        for start in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[start : start + _LOOKUP_CHUNK]
            for row in conn.execute(f"{_SELECT_BY_HASH}({', '.join('?' * len(chunk))})", chunk):
                found[row[_HASH_AT]] = row
        return found


def _count_duplicate(result: WriteResult, stored: tuple[Any, ...], row: tuple[Any, ...], conflicts: list[str]) -> None:
    result.duplicates += 1
    if any(stored[i] != row[i] for i in _CONTENT_AT):
        result.conflicts += 1
        conflicts.append(row[_KEY_AT[1]])


def _run_call(conn: sqlite3.Connection, call: _Call) -> tuple[_Call, Any, BaseException | None]:
    """One call in a savepoint: its failure undoes its own changes only, not the records'."""
    conn.execute("SAVEPOINT spanmeter_call")
    try:
        result = call.fn(conn)
    except Exception as error:  # noqa: BLE001 - handed to the caller through its future
        conn.execute("ROLLBACK TO spanmeter_call")
        conn.execute("RELEASE spanmeter_call")
        return call, None, error
    conn.execute("RELEASE spanmeter_call")
    return call, result, None


def _probe_write(conn: sqlite3.Connection) -> None:
    """Commit a write that needs room (a row of PROBE_BYTES, deleted in the same transaction): it
    fails as record writes do while the disk is full or the database read-only or locked."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO spanmeter_secrets VALUES ('probe', hex(zeroblob(?)))", [PROBE_BYTES // 2])
        conn.execute("DELETE FROM spanmeter_secrets WHERE name = 'probe'")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
