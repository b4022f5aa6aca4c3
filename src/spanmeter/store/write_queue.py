"""The write queue in front of a backend's writer thread: admission, batches and callers' futures.

Concurrent `write` calls queue their records; the writer thread takes everything queued at once
(`batches`) and commits it in one transaction, and only then resolves each caller's future
(`resolve`): an acknowledged record is committed, with the rejected-span count of its request
(`Job.rejected`). The queue is bounded by a number of records, so overload answers `Overloaded`
(503 / UNAVAILABLE with a retry delay) instead of growing memory, and a request larger than the
whole queue `TooManyRecords` (it can never be accepted). The other parts' small writes (the
outbox's, `transaction`) queue as `Call`s and run on the writer's connection too. Each backend's writer owns one and supplies the commit; `setting` names the
config key of its bound in the messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from spanmeter.errors import Overloaded, StorageError, TooManyRecords
from spanmeter.record import UsageRecord
from spanmeter.store.base import Rejected, WriteResult

C = TypeVar("C")  # the backend's write connection
T = TypeVar("T")


@dataclass(slots=True)
class Job:
    """One `write` call's records, and the caller's future resolved after their commit."""

    records: list[UsageRecord]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]
    result: WriteResult = field(default_factory=WriteResult)
    rejected: Rejected | None = None  # the request's rejected spans, counted in the records' transaction


@dataclass(slots=True)
class Call(Generic[C]):
    """A small write of another part (the outbox), run by the writer on its connection."""

    fn: Callable[[C], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class WriteQueue(Generic[C]):
    def __init__(self, *, setting: str, max_queued_records: int, retry_after: float) -> None:
        self.setting = setting  # e.g. "storage::sqlite::max_queued_records"
        self.max_queued_records = max_queued_records
        self.retry_after = retry_after
        self._queue: queue.SimpleQueue[Job | Call[C] | None] = queue.SimpleQueue()
        self._queued = 0  # records admitted and not yet resolved
        self._queued_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the writer thread ---------------------------------------------------------------------
    def start(self, run: Callable[[], None], name: str) -> None:
        """Start the writer thread `run`, which takes its work from `batches`."""
        self._closed = False
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Refuse new writes, let the writer commit what is queued, and wait for it (blocking)."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._closed

    def batches(self, timeout: Callable[[], float | None]) -> Iterator[list[Job | Call[C]]]:
        """For the writer thread: everything queued at once, one transaction's worth; an empty
        batch after `timeout()` seconds with nothing queued (None: wait); ends at `stop`, after
        the batch queued before it."""
        while True:
            try:
                item = self._queue.get(timeout=timeout())
            except queue.Empty:
                yield []
                continue
            if item is None:
                return
            batch: list[Job | Call[C]] = [item]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield batch
                    return
                batch.append(more)
            yield batch

    def resolve(self, done: list[tuple[Job, WriteResult | Exception]]) -> None:
        """For the writer thread, after the commit (or its failure): release the jobs' room in the
        queue and resolve each caller's future, with one wake-up per event loop, not per job (each
        call_soon_threadsafe writes to the loop's self-pipe)."""
        with self._queued_lock:
            self._queued -= sum(len(job.records) for job, _ in done)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, WriteResult | Exception]]] = {}
        for job, outcome in done:
            by_loop.setdefault(job.loop, []).append((job, outcome))
        for loop, outcomes in by_loop.items():
            loop.call_soon_threadsafe(_resolve_all, outcomes)

    # --- callers -------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._queued

    def overloaded(self) -> Overloaded | None:
        if self._queued < self.max_queued_records:
            return None
        return self._full()

    async def write(self, records: list[UsageRecord], rejected: Rejected | None = None) -> WriteResult:
        """Queue the records (and the request's rejected spans, counted in the same transaction)
        and wait for their commit; refuse them when the queue is full."""
        if rejected is not None and rejected.count <= 0:
            rejected = None
        if not records and rejected is None:
            return WriteResult()
        if not self.running:
            raise StorageError("the store is shutting down")
        if len(records) > self.max_queued_records:
            raise TooManyRecords(
                f"the request yields {len(records)} usage records, more than the write queue holds"
                f" ({self.setting}: {self.max_queued_records}); it can never be accepted:"
                " send fewer spans or log records per request"
            )
        with self._queued_lock:
            if self._queued + len(records) > self.max_queued_records:
                raise self._full()
            self._queued += len(records)
        loop = asyncio.get_running_loop()
        job = Job(records, loop, loop.create_future(), rejected=rejected)
        self._queue.put(job)
        # A caller that goes away cancels only its own future: the commit goes on (_resolve_all skips it).
        return await job.future

    def call(self, fn: Callable[[C], T]) -> T:
        """Run `fn` on the writer's connection and return its result (blocking: off the event loop;
        only while `running`)."""
        call: Call[C] = Call(fn)
        self._queue.put(call)
        result: T = call.future.result()
        return result

    def _full(self) -> Overloaded:
        return Overloaded(
            f"write queue full ({self._queued} records waiting, limit {self.max_queued_records})", self.retry_after
        )


def _resolve_all(done: list[tuple[Job, WriteResult | Exception]]) -> None:
    for job, outcome in done:
        if job.future.done():  # its caller went away
            continue
        if isinstance(outcome, Exception):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)
