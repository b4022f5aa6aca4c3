"""SQLite store: the embedded default.

One writer thread owns the write connection. Concurrent `write` calls queue their records; the
writer takes everything queued, commits it in one transaction (`BEGIN IMMEDIATE`, executemany
`INSERT OR IGNORE`) and only then resolves each caller's future, so an acknowledged record is on
disk (WAL) and survives `kill -9`. A bounded queue turns overload into `Overloaded` (→ 503 /
UNAVAILABLE with a retry delay) instead of unbounded memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlite_utils
from sqlite_utils.migrations import Migrations

from spanmeter.errors import Overloaded, StorageError, TooManyRecords
from spanmeter.priority import lower_this_thread
from spanmeter.record import UsageRecord
from spanmeter.store import adoption_rollup, rollup, sqlite_outbox
from spanmeter.store.adoption_rollup import roll_up_adoption
from spanmeter.store.base import RecordFilter, WriteResult
from spanmeter.store.key_hash import key_hash
from spanmeter.store.rollup import roll_up
from spanmeter.store.schema import (
    COLUMNS,
    CONTENT_COLUMNS,
    NOT_NULL_COLUMNS,
    column_type,
    record_to_row,
    row_to_record,
)
from spanmeter.store.sqlite_aggregate import SQLiteAggregate
from spanmeter.store.sqlite_keys import SQLiteKeys
from spanmeter.store.sqlite_outbox import SQLiteOutbox
from spanmeter.store.sqlite_queries import SQLiteQueries

log = logging.getLogger(__name__)
T = TypeVar("T")

migrations = Migrations("spanmeter")


def _insert_sql(columns: tuple[str, ...]) -> str:
    return f"INSERT OR IGNORE INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


# Rows are COLUMNS plus the store's own `key_hash` (store/key_hash.py) at the end.
_ROW_COLUMNS: Final = (*COLUMNS, "key_hash")
_INSERT: Final = _insert_sql(_ROW_COLUMNS)
_SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM records"
_SELECT_BY_HASH: Final = f"SELECT {', '.join(COLUMNS)}, key_hash FROM records WHERE key_hash IN "
_HASH_AT: Final = len(COLUMNS)
_CONTENT_AT: Final = tuple(COLUMNS.index(c) for c in CONTENT_COLUMNS)
_ID_AT: Final = COLUMNS.index("id")
_COST_AT: Final = COLUMNS.index("cost_usd_nano")
_KEY_AT: Final = (COLUMNS.index("workspace"), COLUMNS.index("idempotency_key"))
CHECKPOINT_SECONDS: Final = 0.5  # see _checkpoints
WAL_RESTART_PAGES: Final = 16_384  # 64 MiB of 4 KiB pages: the writer lets the WAL start over
WAL_LIMIT_PAGES: Final = 65_536  # 256 MiB: the writer truncates it
PROBE_SECONDS: Final = 1.0  # while writes fail, how often the writer tries a write of its own
PROBE_BYTES: Final = 64 * 1024  # what the probe writes: a few pages more than the database has
_LOOKUP_CHUNK: Final = 800  # key hashes per SELECT, under SQLite's parameter limit

# CPython 3.11's sqlite3 binds only int, float, str and bytearray directly; anything else, None
# included, goes through its adapter lookup. Measured on 2026-11-30 (bench/README.md "Where the time
# goes"): ~1 µs per None, ~0.33 µs with this registered adapter (C, returns None), and a record
# row has ~35 of them. The adapter serves every other statement; process-wide, and it changes
# nothing but the speed: None is still bound as NULL.
sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]  # {}.get(None) is None
# The records INSERT goes further: a float NaN binds directly (~0.06 µs), and SQLite stores a
# bound NaN as NULL (sqlite3_bind_double), so its rows are bound with NaN for None: -2.4 to
# -3.5 µs per record, the mapping included.
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


@migrations(name="m001_records")
def _m001_records(db: sqlite_utils.Database) -> None:
    db.table("records").create(
        {"seq": int, **{c: int if column_type(c) == "INTEGER" else str for c in COLUMNS}},
        pk="seq",
        not_null=NOT_NULL_COLUMNS,
    )
    db.execute("CREATE UNIQUE INDEX records_key ON records (workspace, idempotency_key)")
    db.execute("CREATE INDEX records_occurred ON records (workspace, occurred_at)")
    db.execute("CREATE INDEX records_customer ON records (workspace, customer_id, seq)")


@migrations(name="m002_query_indexes")
def _m002_query_indexes(db: sqlite_utils.Database) -> None:
    # Pages of the query API walk seq (the rowid, implicit at the end of each index) per workspace.
    db.execute("CREATE INDEX records_workspace ON records (workspace)")
    db.execute("CREATE INDEX records_type ON records (workspace, type)")
    db.execute(
        "CREATE INDEX records_conversation ON records (workspace, conversation_id) WHERE conversation_id IS NOT NULL"
    )
    # meta[key]=value filters: one row per meta entry, kept by a trigger so the hot path is unchanged.
    db.execute(
        "CREATE TABLE record_meta (workspace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " seq INTEGER NOT NULL, PRIMARY KEY (workspace, key, value, seq)) WITHOUT ROWID"
    )
    select_meta = (
        "SELECT {r}.workspace, j.key, COALESCE(CAST(j.value AS TEXT), ''), {r}.seq FROM json_each({r}.meta) AS j"
    )
    db.execute(
        "CREATE TRIGGER records_meta_insert AFTER INSERT ON records"
        " WHEN NEW.meta IS NOT NULL AND json_valid(NEW.meta) BEGIN"
        f" INSERT OR IGNORE INTO record_meta (workspace, key, value, seq) {select_meta.format(r='NEW')}; END"
    )
    db.execute(
        "INSERT OR IGNORE INTO record_meta (workspace, key, value, seq) "
        + select_meta.format(r="records").replace("FROM json_each", "FROM records, json_each")
        + " WHERE records.meta IS NOT NULL AND json_valid(records.meta)"
    )


@migrations(name="m003_api_keys")
def _m003_api_keys(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL,"
        " prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL, state TEXT NOT NULL,"
        " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)"
    )
    # Signs query cursors; kept in the database so every instance on it accepts the others' cursors.
    db.execute("CREATE TABLE spanmeter_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO spanmeter_secrets VALUES ('cursor', ?)", [os.urandom(32).hex()])


@migrations(name="m004_lighter_query_indexes")
def _m004_lighter_query_indexes(db: sqlite_utils.Database) -> None:
    # Measured on the write path: the record_meta trigger cut SQLite ingest by ~70% for records with
    # meta, and records_type ~5%. Meta filters now read json_extract in seq order (dense values stop
    # early); type is low-cardinality, so a page finds its rows in the seq scan just as quickly.
    db.execute("DROP TRIGGER IF EXISTS records_meta_insert")
    db.execute("DROP TABLE IF EXISTS record_meta")
    db.execute("DROP INDEX IF EXISTS records_type")


@migrations(name="m005_daily_rollups")
def _m005_daily_rollups(db: sqlite_utils.Database) -> None:
    for statement in (*rollup.SCHEMA, *rollup.BACKFILL):
        db.execute(statement)


@migrations(name="m006_product_events_index")
def _m006_product_events_index(db: sqlite_utils.Database) -> None:
    # Adoption rows read 30 days of product events only (~1 record in 10): a partial index keeps
    # them apart, and costs nothing on the ingest of LLM calls.
    db.execute(
        "CREATE INDEX records_product_events ON records (workspace, occurred_at)"
        " WHERE kind = 'event' AND (product_id IS NOT NULL OR product_name IS NOT NULL)"
    )


@migrations(name="m007_key_hash")
def _m007_key_hash(db: sqlite_utils.Database) -> None:
    # (workspace, idempotency_key) stays unique through a UNIQUE index of its 64-bit hash.
    db.conn.create_function("spanmeter_key_hash", 2, key_hash, deterministic=True)
    db.execute("ALTER TABLE records ADD COLUMN key_hash INTEGER")
    db.execute("UPDATE records SET key_hash = spanmeter_key_hash(workspace, idempotency_key)")
    colliding = db.execute("SELECT key_hash FROM records GROUP BY key_hash HAVING COUNT(*) > 1").fetchall()
    for (taken,) in colliding:  # the later records of a shared hash move to their next free probe
        rows = db.execute("SELECT seq, workspace, idempotency_key FROM records WHERE key_hash = ? ORDER BY seq", [taken])
        for seq, workspace, key in rows.fetchall()[1:]:
            probe = 1
            while db.execute("SELECT 1 FROM records WHERE key_hash = ?", [key_hash(workspace, key, probe)]).fetchone():
                probe += 1
            db.execute("UPDATE records SET key_hash = ? WHERE seq = ?", [key_hash(workspace, key, probe), seq])
    db.execute("CREATE UNIQUE INDEX records_key_hash ON records (key_hash)")
    db.execute("DROP INDEX records_key")


@migrations(name="m008_outbox")
def _m008_outbox(db: sqlite_utils.Database) -> None:
    for statement in sqlite_outbox.SCHEMA:
        db.execute(statement)


@migrations(name="m009_meter_rollup")
def _m009_meter_rollup(db: sqlite_utils.Database) -> None:
    # Each meter's quantity per day, for the snapshot; filled from the meter records already stored.
    db.execute(rollup.METER_SCHEMA)
    stored = db.execute(
        "SELECT workspace, customer_id, occurred_at, meter, quantity FROM records WHERE kind = 'meter'"
    ).fetchall()
    rollup.add_meters(db.conn, ((w, c, at, m, Decimal(q)) for w, c, at, m, q in stored if q is not None))


@migrations(name="m010_key_quotas")
def _m010_key_quotas(db: sqlite_utils.Database) -> None:
    # A key's monthly quota (store/queries.py ApiKey); NULL: no limit of that kind.
    db.execute("ALTER TABLE api_keys ADD COLUMN quota_records INTEGER")
    db.execute("ALTER TABLE api_keys ADD COLUMN quota_cost_nano INTEGER")


@migrations(name="m013_exporter_counts")
def _m013_exporter_counts(db: sqlite_utils.Database) -> None:
    for statement in sqlite_outbox.COUNTS_SCHEMA:
        db.execute(statement)


@migrations(name="m011_adoption_rollups")
def _m011_adoption_rollups(db: sqlite_utils.Database) -> None:
    # The public adoption rows from rollups (store/adoption_rollup.py), filled from stored events.
    for statement in (*adoption_rollup.SCHEMA, *adoption_rollup.BACKFILL):
        db.execute(statement)


@migrations(name="m012_usage_daily_by_day")
def _m012_usage_daily_by_day(db: sqlite_utils.Database) -> None:
    # Meter queries read a range of days for every customer (30 days x 2,000 customers): in day
    # order, covered, instead of every day of every customer of the workspace, sorted.
    db.execute(
        "CREATE INDEX usage_daily_by_day ON usage_daily (workspace, day, customer_id, cost_nano, tokens,"
        " input_tokens, output_tokens, messages, events, meters)"
    )


def connect(path: str | Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@dataclass(slots=True)
class _Job:
    records: list[UsageRecord]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]
    result: WriteResult = field(default_factory=WriteResult)


@dataclass(slots=True)
class _Call:
    """A small write of another part (the outbox) run by the writer, inside its next transaction."""

    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class SQLiteStore(SQLiteQueries, SQLiteAggregate, SQLiteKeys, SQLiteOutbox):
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        max_queued_records: int = 200_000,
        busy_timeout: float = 5.0,
        retry_after: float = 1.0,
        cache_mb: int = 32,
    ) -> None:
        self.path = Path(path)
        self.cache_mb = cache_mb
        self.synchronous = synchronous
        self.max_queued_records = max_queued_records
        self.busy_timeout = busy_timeout
        self.retry_after = retry_after
        self._queue: queue.SimpleQueue[_Job | _Call | None] = queue.SimpleQueue()
        self._queued = 0
        self._queued_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._since_checkpoint = 0  # records committed since the last checkpoint (the writer adds)
        self._rewind_due = False  # the WAL passed WAL_RESTART_PAGES: the writer finishes a checkpoint
        self._closed = False
        self._page_size = 4096
        # Why writes fail now (a StorageError message), None while they succeed: /readyz reports it.
        self.failure: str | None = None
        self.failure_reason: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open (creating it if need be) and migrate the database, and check that a write commits:
        a store that cannot write refuses to start, with a StorageError saying why."""
        try:
            await asyncio.to_thread(self.migrate)
        except (OSError, sqlite3.Error) as error:
            raise StorageError(f"cannot open the database {self.path}: {error}", _error_reason(error) or "other") from None
        try:
            await asyncio.to_thread(self.check_writable)
        except StorageError as error:
            raise StorageError(
                f"cannot write the database {self.path}: {str(error).removeprefix('storage write failed: ')}", error.reason
            ) from None
        self._writer = threading.Thread(target=self._run, name="spanmeter-sqlite-writer", daemon=True)
        self._writer.start()
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="spanmeter-sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def migrate(self) -> None:
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, timeout=self.busy_timeout)
        try:
            db = sqlite_utils.Database(conn)
            pending = [m.name for m in migrations.pending(db)]
            if pending and db["records"].exists():
                # Backfills read every stored record: minutes at tens of millions (m005: 168 s at 10M).
                log.info("upgrading %s: applying %s; this can take a while on a large database",
                         self.path, ", ".join(pending))
            started = time.monotonic()
            migrations.apply(db)
            if pending:
                log.info("applied %d migration(s) in %.1f s", len(pending), time.monotonic() - started)
        finally:
            conn.close()

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        self.close_readers()
        self.close_outbox()

    @property
    def queued(self) -> int:
        return self._queued

    # --- writing -----------------------------------------------------------------------------
    def overloaded(self) -> Overloaded | None:
        if self._queued < self.max_queued_records:
            return None
        return Overloaded(
            f"write queue full ({self._queued} records waiting, limit {self.max_queued_records})", self.retry_after
        )

    async def write(self, records: list[UsageRecord]) -> WriteResult:
        if not records:
            return WriteResult()
        if self._closed or self._writer is None:
            raise StorageError("the store is shutting down")
        if len(records) > self.max_queued_records:
            raise TooManyRecords(
                f"the request yields {len(records)} usage records, more than the write queue holds"
                f" (storage::sqlite::max_queued_records: {self.max_queued_records}); it can never be accepted:"
                " send fewer spans or log records per request"
            )
        with self._queued_lock:
            if self._queued + len(records) > self.max_queued_records:
                raise Overloaded(
                    f"write queue full ({self._queued} records waiting, limit {self.max_queued_records})",
                    self.retry_after,
                )
            self._queued += len(records)
        loop = asyncio.get_running_loop()
        job = _Job(records, loop, loop.create_future())
        self._queue.put(job)
        # A caller that goes away cancels only its own future: the commit goes on (_resolve_all skips it).
        return await job.future

    def _checkpoints(self) -> None:
        """Copy the WAL into the database off the writer's path.

        SQLite's automatic checkpoint runs inside the commit that crosses the threshold and stalls
        the writer; here a PASSIVE checkpoint runs beside it (it never blocks writes), every
        CHECKPOINT_SECONDS when records were committed. This thread runs at a lower CPU
        priority: a checkpoint copies every page the batches touched (the key index's pages are
        random), a CPU burst that otherwise delays the requests in flight (p99 at half load,
        bench/README.md); at low priority it uses the idle time between them. If it falls behind
        and the WAL file passes WAL_LIMIT_PAGES, the writer truncates it (at normal priority).

        Under steady writes the WAL never starts over by itself: SQLite rewinds it only at the
        start of a transaction after a checkpoint that copied every frame, and new frames arrive
        while this thread copies. So past WAL_RESTART_PAGES the writer copies the few frames
        left itself, between two transactions, and its next one rewinds the WAL (without this it
        grew to the limit every ~5 s at 12k spans/s, and each truncation stalled writes 0.13 s).
        A PASSIVE checkpoint that does not copy the whole WAL leaves the database file unsynced;
        this thread syncs it after each one, so that the rewind's own sync (on the writer's path)
        is not seconds of copied pages: measured with strace, 20-24 ms down to a few.
        """
        lower_this_thread("checkpoint")
        conn = connect(self.path, timeout=self.busy_timeout)
        database_fd = os.open(self.path, os.O_RDONLY)
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_SECONDS):
                with self._queued_lock:
                    since, self._since_checkpoint = self._since_checkpoint, 0
                if not since:
                    continue  # nothing new to copy
                again = False
                try:
                    _busy, wal_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if done:  # flush the copied pages now, so the writer's rewind finds little to sync
                        os.fdatasync(database_fd)
                    if wal_pages > WAL_RESTART_PAGES:
                        self._rewind_due = True
                    else:
                        again = done < wal_pages  # readers kept some frames
                except (sqlite3.Error, OSError) as error:
                    log.warning("SQLite checkpoint failed (will retry): %s", error)
                    again = True
                if again:
                    with self._queued_lock:
                        self._since_checkpoint += since
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            log.warning("final SQLite checkpoint failed: %s", error)
        finally:
            os.close(database_fd)
            conn.close()

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, timeout=self.busy_timeout)
        try:
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # The unique key index is written at random places: keep it in memory as the table grows.
            conn.execute(f"PRAGMA cache_size=-{self.cache_mb * 1024}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoints
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            # A rewound WAL file is cut back to this size, so its size tells how far the log has grown.
            conn.execute(f"PRAGMA journal_size_limit={WAL_RESTART_PAGES * self._page_size}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        wal = Path(f"{self.path}-wal")
        next_truncation = 0.0
        try:
            while True:
                try:  # while the store fails, a write probe every PROBE_SECONDS finds when it recovers
                    job = self._queue.get(timeout=PROBE_SECONDS) if self.failure else self._queue.get()
                except queue.Empty:
                    conn = self._probe(conn)
                    continue
                if job is None:
                    return
                jobs = [job]
                stop = False
                while True:  # take everything queued now: one transaction for all of it
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    jobs.append(more)
                conn = self._commit(conn, jobs)
                if conn is not None and self._rewind_due:
                    self._rewind_due = False
                    _finish_checkpoint(conn)
                if conn is not None and time.monotonic() >= next_truncation:
                    with contextlib.suppress(OSError):
                        if wal.stat().st_size > WAL_LIMIT_PAGES * self._page_size and not _truncate_wal(conn):
                            next_truncation = time.monotonic() + CHECKPOINT_SECONDS  # a checkpoint runs: later
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def check_writable(self) -> None:
        """Commit a write that changes nothing (blocking), or raise StorageError saying why not."""
        try:
            conn = connect(self.path, timeout=self.busy_timeout)
        except sqlite3.Error as error:
            raise _storage_error(error) from None
        try:
            _probe_write(conn)
        except sqlite3.Error as error:
            raise _storage_error(error) from None
        finally:
            conn.close()

    def _probe(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        try:
            conn = conn or self._open_writer()
            _probe_write(conn)
        except sqlite3.Error as error:
            self._failed(error)
            return None if _reconnect(error) else conn
        self._recovered()
        return conn

    def _failed(self, error: BaseException) -> StorageError:
        failure = _storage_error(error)
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
        if self._writer is not None and not self._closed:
            call = _Call(fn)
            self._queue.put(call)
            result: T = call.future.result()
            return result
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

    def _commit(self, conn: sqlite3.Connection | None, batch: list[_Job | _Call]) -> sqlite3.Connection | None:
        """Commit the batch in one transaction; the writer's connection after it (None: reopen).

        A failure of the environment (disk full, locked, read-only, I/O) fails every caller with a
        retryable StorageError. Any other failure comes from some record's value: then each
        request is written alone, so only the one holding that record is affected, and in it
        the record alone is refused (WriteResult.refused), the rest stored.
        """
        jobs = [job for job in batch if isinstance(job, _Job)]
        calls: list[tuple[_Call, Any, BaseException | None]] = []
        errors: dict[int, Exception] = {}  # id(job) → its failure
        try:
            conn = conn or self._open_writer()
            calls = self._transaction(conn, jobs, [c for c in batch if isinstance(c, _Call)])
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any failure, and tell every caller
            if conn is None or _environmental(exc):
                log.error("SQLite write of %d records failed: %s", sum(len(j.records) for j in jobs), exc)
                error = self._failed(exc)
                errors = {id(job): error for job in jobs}
                calls = [(call, None, error) for call in batch if isinstance(call, _Call)]
                if conn is not None and _reconnect(exc):
                    conn.close()
                    conn = None
            else:
                log.warning("SQLite write of a batch of %d requests failed (%s): writing each alone", len(batch), exc)
                calls = []
                for item in batch:
                    if isinstance(item, _Job):
                        if (job_error := self._write_alone(conn, item)) is not None:
                            errors[id(item)] = job_error
                        continue
                    try:
                        calls.extend(self._transaction(conn, [], [item]))
                    except Exception as call_error:  # noqa: BLE001 - handed to the caller
                        calls.append((item, None, self._failed(call_error)))
        if not errors and all(failure is None for _call, _result, failure in calls):
            self._recovered()
        with self._queued_lock:
            self._queued -= sum(len(j.records) for j in jobs)
            self._since_checkpoint += sum(len(job.result.inserted) for job in jobs if id(job) not in errors)
        # One wake-up per event loop, not per job: each call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Exception | None]]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append((job, errors.get(id(job))))
        for loop, done in by_loop.items():
            loop.call_soon_threadsafe(_resolve_all, done)
        for call, result, failure in calls:
            if failure is not None:
                call.future.set_exception(failure)
            else:
                call.future.set_result(result)
        return conn

    def _transaction(
        self, conn: sqlite3.Connection, jobs: list[_Job], calls: list[_Call]
    ) -> list[tuple[_Call, Any, BaseException | None]]:
        done: list[tuple[_Call, Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert(conn, jobs)
            done = [_run_call(conn, call) for call in calls]
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)  # SQLite may have rolled back itself (disk full): its error is the one to tell
            raise
        return done

    def _write_alone(self, conn: sqlite3.Connection, job: _Job) -> Exception | None:
        """One request's records in a transaction of their own: each in a savepoint, so that a
        record the store cannot hold is refused alone. Its failure, if the whole write failed."""
        result = WriteResult()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for record in job.records:
                    one = _Job([record], job.loop, job.future)
                    conn.execute("SAVEPOINT spanmeter_record")
                    try:
                        self._insert(conn, [one])
                    except Exception as exc:
                        if _environmental(exc):
                            raise
                        conn.execute("ROLLBACK TO spanmeter_record")
                        result.refused.append((record, _describe_value_error(exc)))
                    conn.execute("RELEASE spanmeter_record")
                    result.inserted.extend(one.result.inserted)
                    result.duplicates += one.result.duplicates
                    result.conflicts += one.result.conflicts
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
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

    def _insert(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        for job in jobs:
            job.result = WriteResult()
        # The row each key ends with: the first of the batch, or the one stored before it.
        winners: dict[tuple[str, str], tuple[Any, ...]] = {}
        rows: list[tuple[Any, ...]] = []
        owners: list[tuple[_Job, UsageRecord]] = []
        repeats: list[tuple[_Job, tuple[Any, ...]]] = []  # later rows of a key within this batch
        conflict_keys: list[str] = []
        for job in jobs:
            for record in job.records:
                key = (record.workspace, record.idempotency_key)
                row = record_to_row(record) + (key_hash(*key),)
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
        roll_up(conn, new)
        roll_up_adoption(conn, (record for record, _ in new))
        if conflict_keys:
            log.warning(
                "%d duplicate records differ from the stored ones (the first stored wins), e.g. key %r",
                len(conflict_keys),
                conflict_keys[0],
            )

    def _place(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
        """A row whose hash slot holds another key: try its next probes (store/key_hash.py).

        Returns the stored row of its key and whether it is this row (inserted) or an earlier one.
        """
        workspace, key = row[_KEY_AT[0]], row[_KEY_AT[1]]
        probe = 0
        while True:
            probe += 1
            row = row[:_HASH_AT] + (key_hash(workspace, key, probe),)
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

    # --- reading -----------------------------------------------------------------------------
    def recent(self, where: RecordFilter, limit: int) -> list[UsageRecord]:
        clauses, params = [], []  # type: list[str], list[Any]
        for column, value in (("workspace", where.workspace), ("customer_id", where.customer_id), ("kind", where.kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.since_ns is not None:
            clauses.append("occurred_at >= ?")
            params.append(where.since_ns)
        where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        # By when they occurred, not when they arrived: batches arrive out of time order.
        sql = f"{_SELECT}{where_sql} ORDER BY occurred_at DESC, seq DESC LIMIT ?"
        return [row_to_record(row) for row in self._fetch(sql, [*params, limit])]

    def workspaces(self) -> list[str]:
        """Workspaces that hold records (read from the daily rollups: a few rows, not the records)."""
        return [w for (w,) in self._fetch("SELECT DISTINCT workspace FROM usage_daily ORDER BY 1", [])]


def _finish_checkpoint(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as error:
        log.warning("SQLite checkpoint failed (will retry): %s", error)


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Copy the whole WAL and cut it to zero; False when a running checkpoint holds it (later)."""
    started = time.monotonic()
    try:
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as error:
        log.warning("SQLite WAL truncation failed (will retry): %s", error)
        return False
    if busy:
        return False
    log.info("the WAL passed %d pages: copied and truncated it in %.2f s", WAL_LIMIT_PAGES, time.monotonic() - started)
    return True


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


def _resolve_all(done: list[tuple[_Job, Exception | None]]) -> None:
    for job, error in done:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(job.result)


def _probe_write(conn: sqlite3.Connection) -> None:
    """Commit a write that needs room (a row of PROBE_BYTES, deleted in the same transaction): it
    fails as record writes do while the disk is full or the database read-only or locked."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO spanmeter_secrets VALUES ('probe', hex(zeroblob(?)))", [PROBE_BYTES // 2])
        conn.execute("DELETE FROM spanmeter_secrets WHERE name = 'probe'")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


# SQLite's result codes of a failing environment, by what they are called in messages and metrics.
_ENVIRONMENT_ERRORS: Final = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_BUSY": "locked",
    "SQLITE_LOCKED": "locked",
    "SQLITE_READONLY": "read_only",
    "SQLITE_IOERR": "io",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_PERM": "read_only",
    "SQLITE_NOMEM": "out_of_memory",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "corrupt",
    "SQLITE_PROTOCOL": "locked",
}
_WHAT: Final = {"disk_full": "disk full", "read_only": "the database is read-only", "io": "I/O error"}


def _error_reason(error: BaseException) -> str | None:
    name = getattr(error, "sqlite_errorname", None)
    if not isinstance(name, str):
        return "io" if isinstance(error, OSError) else None
    return _ENVIRONMENT_ERRORS.get("_".join(name.split("_")[:2]))  # SQLITE_IOERR_WRITE → SQLITE_IOERR


def _environmental(error: BaseException) -> bool:
    """Whether the failure is the store's (disk, locks, permissions), not some record's value."""
    return _error_reason(error) is not None or isinstance(error, sqlite3.OperationalError)


def _reconnect(error: BaseException) -> bool:
    """A failure that may have left the connection unusable (files gone, permissions changed)."""
    return _error_reason(error) in ("io", "cannot_open", "read_only", "corrupt")


def _storage_error(error: BaseException) -> StorageError:
    reason = _error_reason(error) or "other"
    what = _WHAT.get(reason)
    return StorageError(f"storage write failed: {what + ': ' if what else ''}{error}", reason)


def _describe_value_error(error: BaseException) -> str:
    if isinstance(error, OverflowError):
        return f"a value is out of the store's range ({error})"
    return f"the store cannot hold it ({type(error).__name__}: {error})"
