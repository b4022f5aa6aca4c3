"""The PostgreSQL store's writer: one thread per instance, owning a write connection.

Concurrent `write` calls queue their records (store/write_queue.py, bounded); the writer takes
everything queued and commits it in one transaction holding the store's write lock (records.py),
and only then resolves each caller's future: an acknowledged record is committed (with its
request's rejected-span count, store/sql/attention.py). A lost database fails the waiting writes with a retryable StorageError (503 /
UNAVAILABLE with a retry delay) and sets `failure` (`/readyz` not ready); the writer then tries
it every PROBE_SECONDS, and when it answers writes go on: no restart needed. With nothing to
write it checks the database every IDLE_CHECK_SECONDS, so `/readyz` tells an outage even while
no request arrives. The other parts' writes (the outbox's) run here too, each in a transaction
of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Final, TypeVar

import psycopg
from psycopg.errors import PipelineAborted

from spanmeter.errors import StorageError
from spanmeter.store.base import WriteResult
from spanmeter.store.postgres import records as writer
from spanmeter.store.postgres.connection import SqliteLike, connect, redacted, unavailable
from spanmeter.store.sql import attention
from spanmeter.store.write_queue import Call, Job, WriteQueue

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_SECONDS: Final = 0.5  # while the database is unreachable, how often the writer tries again
IDLE_CHECK_SECONDS: Final = 2.0  # with nothing to write, how often it checks the database is there


class Writer:
    def __init__(self, dsn: str, *, max_queued_records: int, connect_timeout: float, retry_after: float) -> None:
        self.dsn = dsn
        self.busy_timeout = connect_timeout
        self.queue: WriteQueue[SqliteLike] = WriteQueue(
            setting="storage::postgres::max_queued_records",
            max_queued_records=max_queued_records,
            retry_after=retry_after,
        )
        # Why writes fail now (a StorageError message), None while they succeed: /readyz reports it.
        self.failure: str | None = None
        self.failure_reason: str | None = None
        # The database unreachable, as reads meanwhile report it (PostgresStore._fetch fails them
        # at once); None while it answers, even if writes fail for another reason.
        self.read_failure: str | None = None
        self._expect_new = True  # records.write: the next batch's keys are new (no duplicates last time)

    @property
    def location(self) -> str:
        return redacted(self.dsn)

    def start(self) -> None:
        self.queue.start(self._run, "spanmeter-postgres-writer")

    def stop(self) -> None:
        """Commit what is queued, then stop (blocking)."""
        self.queue.stop()

    def _run(self) -> None:
        db: SqliteLike | None = None
        try:
            for batch in self.queue.batches(lambda: PROBE_SECONDS if self.failure else IDLE_CHECK_SECONDS):
                db = self._commit(db, batch) if batch else self._probe(db)
        finally:
            if db is not None:
                db.close()

    def _probe(self, db: SqliteLike | None) -> SqliteLike | None:
        try:
            db = db or SqliteLike(connect(self.dsn, self.busy_timeout))
            db.conn.execute("SELECT 1")
        except psycopg.Error as error:
            self._failed(error)
            if db is not None:
                db.close()
            return None
        self._recovered()
        return db

    def _commit(self, db: SqliteLike | None, batch: list[Job | Call[SqliteLike]]) -> SqliteLike | None:
        jobs = [item for item in batch if isinstance(item, Job)]
        calls = [item for item in batch if isinstance(item, Call)]
        results: list[WriteResult] = []
        failure: Exception | None = None
        try:
            db = db or SqliteLike(connect(self.dsn, self.busy_timeout))
            try:
                results = self._transaction(db, jobs) if jobs else []
            except psycopg.Error as error:  # some record's value: each request alone, each record alone
                if isinstance(error, psycopg.OperationalError) and not isinstance(error, PipelineAborted):
                    raise  # the connection (PipelineAborted: a statement after a failed one)
                log.warning("PostgreSQL write of %d requests failed (%s): writing each alone", len(jobs), error)
                results = [self._write_alone(db, job) for job in jobs]
        except psycopg.OperationalError as error:  # the connection: lost, refused, server shutting down
            failure = self._failed(error)
        except Exception as error:  # the writer thread must outlive any failure, and tell every caller
            log.exception("PostgreSQL write of %d requests failed", len(jobs))
            failure = self._failed(error)
        if failure is not None and db is not None:
            db.close()  # a fresh connection for the next attempt: this one may be in any state
            db = None
        if failure is None:
            self._recovered()
        outcomes: list[WriteResult | Exception] = [failure] * len(jobs) if failure is not None else list(results)
        self.queue.resolve(list(zip(jobs, outcomes, strict=True)))
        for call in calls:  # the outbox's writes: after the records, each in its own transaction
            db = self._run_call(db, call)
        return db

    def _transaction(self, db: SqliteLike, jobs: list[Job]) -> list[WriteResult]:
        try:
            counts = [c for job in jobs for c in attention.rejected_counts(job.rejected, ())]
            results = writer.write(db, [job.records for job in jobs], expect_new=self._expect_new, counts=counts)
        except BaseException:
            _rollback(db)
            raise
        # Duplicates come in runs (a client's retries, a replay): after some, write the careful way.
        self._expect_new = not any(result.duplicates for result in results)
        conflicts = sum(result.conflicts for result in results)
        if conflicts:
            log.warning("%d duplicate records differ from the stored ones (the first stored wins)", conflicts)
        return results

    def _write_alone(self, db: SqliteLike, job: Job) -> WriteResult:
        """One request's records, each in a savepoint: a record the store cannot hold is refused alone."""
        result = WriteResult()
        try:
            writer.begin(db)
            for record in job.records:
                db.conn.execute("SAVEPOINT spanmeter_record")
                try:
                    [one] = writer.insert(db, [[record]])
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as error:
                    db.conn.execute("ROLLBACK TO SAVEPOINT spanmeter_record")
                    result.refused.append((record, f"the store cannot hold it ({type(error).__name__}: {error})"))
                    continue
                db.conn.execute("RELEASE SAVEPOINT spanmeter_record")
                result.inserted.extend(one.inserted)
                result.duplicates += one.duplicates
                result.conflicts += one.conflicts
            attention.add_counts(db, attention.rejected_counts(job.rejected, result.refused))
            db.conn.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return result

    def _run_call(self, db: SqliteLike | None, call: Call[SqliteLike]) -> SqliteLike | None:
        try:
            db = db or SqliteLike(connect(self.dsn, self.busy_timeout))
            try:
                writer.begin(db)
                result = call.fn(db)
                db.conn.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except psycopg.OperationalError as error:
            call.future.set_exception(self._failed(error))
            if db is not None:
                db.close()
            return None
        except Exception as error:  # noqa: BLE001 - handed to the caller through its future
            call.future.set_exception(error)
            return db
        call.future.set_result(result)
        return db

    def _failed(self, error: BaseException) -> StorageError:
        failure = unavailable(error, self.dsn)
        if self.failure != str(failure):
            log.error("PostgreSQL store: %s; writes are refused (503 / UNAVAILABLE) until it is back", failure)
        self.failure = str(failure)
        self.failure_reason = failure.reason
        unreachable = isinstance(error, psycopg.OperationalError)  # the connection: reads cannot reach it either
        self.read_failure = str(unavailable(error, self.dsn, "storage read failed")) if unreachable else None
        return failure

    def _recovered(self) -> None:
        if self.failure is not None:
            log.warning("PostgreSQL store %s writes again (it failed: %s)", self.location, self.failure)
        self.failure = self.failure_reason = self.read_failure = None

    def transaction(self, fn: Callable[[SqliteLike], T]) -> T:
        """Run `fn` in a write transaction holding the store's write lock, and return its result
        (blocking: call it off the event loop). While the writer runs, on its connection."""
        if self.queue.running:
            return self.queue.call(fn)
        db = SqliteLike(connect(self.dsn, self.busy_timeout))  # no writer (the CLI): a connection of its own
        try:
            writer.begin(db)
            result = fn(db)
            db.conn.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        finally:
            db.close()
        return result


def _rollback(db: SqliteLike) -> None:
    if not db.conn.closed and db.in_transaction:
        with contextlib.suppress(psycopg.Error):
            db.conn.execute("ROLLBACK")

