"""One exporter's loop: claim a batch from the outbox, send it, settle the outcome.

Batches go out in seq order, one at a time per exporter. A passing failure keeps the batch and
backs off (exponential with jitter, capped at `max_interval`, at least what `Retry-After` asked); past `max_elapsed_time`
the batch becomes dead and the next one is tried. The store holds every step, so a restart
resumes where the last process stopped, with the same batch and the same message id.

Paused (the target refuses spanmeter's credentials) and LongBackoff (402: come back in hours)
keep the batch without ever making it dead: the time they last stops the `max_elapsed_time`
clock, which starts again at the next passing failure. A Partial outcome's settled records are
committed first. An exporter that sends one record per request (`RecordSender`) has each accepted
record committed before the next is sent, so a retry or a restart never sends it again. Records
an exporter skips (`SkipsRecords`) are counted in the store by the commit that settles them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from spanmeter.errors import StorageError
from spanmeter.exporters import registry
from spanmeter.exporters.base import (
    Dead,
    Delivered,
    Exporter,
    LongBackoff,
    Outcome,
    Partial,
    Paused,
    ReadsStore,
    RecordSender,
    RetryLater,
    SkipsRecords,
)
from spanmeter.exporters.settings import ExporterConfig
from spanmeter.metrics import Metrics
from spanmeter.priority import lower_this_thread
from spanmeter.store.outbox import Claim, ExportFilter, LeaseLost, NotDue, Skipped, new_owner
from spanmeter.store.port import Outbox, QueryStore

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS: Final = 60.0  # another process may take over an exporter this long after its holder stopped
# (at once when the holder was a process of this machine that is gone: store/outbox.py holder_is_gone)
LEASE_POLL_SECONDS: Final = 1.0  # how often a process waiting for another's lease asks again
MAX_RETRY_AFTER: Final = 86_400.0  # a Retry-After beyond a day is taken as a day
STOP_GRACE_SECONDS: Final = 10.0


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    initial_interval: float = 1.0
    max_interval: float = 60.0
    max_elapsed_time: float = 3600.0  # 0: never give a batch up
    multiplier: float = 2.0
    randomization: float = 0.5  # the delay is drawn from ±50 % of the backoff, so exporters do not retry in step
    long_interval: float = 10_800.0  # after a LongBackoff (402)

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt, after `attempts` failed ones (1 or more): never more
        than `max_interval` (the jitter too), unless the receiver's Retry-After asks for longer."""
        backoff = min(self.max_interval, self.initial_interval * self.multiplier ** (attempts - 1))
        jittered = min(self.max_interval, backoff * random.uniform(1 - self.randomization, 1 + self.randomization))
        if retry_after is not None:
            return max(jittered, min(retry_after, MAX_RETRY_AFTER))
        return jittered


class ExportRunner:
    def __init__(
        self,
        exporter: Exporter,
        outbox: Outbox,
        where: ExportFilter,
        metrics: Metrics,
        *,
        max_batch: int = 100,
        flush_interval: float = 1.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.exporter = exporter
        self.outbox = outbox
        self.where = where
        self.metrics = metrics
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.retry = retry
        self.owner = new_owner()
        # Records the exporter skipped since the claim in hand was taken, not stored yet: stored
        # with the settlement that moves past them (one transaction), dropped when the batch is
        # sent again (it skips them again then).
        self._skipped: dict[str, tuple[int, str]] = {}  # reason -> (count, the latest detail)
        if isinstance(exporter, SkipsRecords):
            exporter.count_skips(self._count_skip)
        # All of an exporter's work (reading batches, sending them) runs on one thread of its own, at
        # a lower CPU priority: in a sidecar it shares the core with ingest, and must use what
        # ingest leaves. One thread, not the default executor's: spread over those, each batch
        # landed in another malloc arena (~8 vs ~3 MB more RSS per 200k records exported).
        self._thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"spanmeter-{exporter.name}", initializer=lower_this_thread, initargs=("exporter",)
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting_for: str | None = None  # the other process holding the lease, once logged

    @classmethod
    def of(
        cls, exporter_id: str, config: ExporterConfig, outbox: Outbox, metrics: Metrics, queries: QueryStore | None = None
    ) -> ExportRunner:
        """The runner of a configured exporter, of whatever registered type; `queries`: the store's
        records, for a type that reads them too (`ReadsStore`)."""
        exporter = registry.create(exporter_id, config)
        if queries is not None and isinstance(exporter, ReadsStore):
            exporter.read_from(queries)
        return cls(
            exporter,
            outbox,
            config.filter.export_filter(),
            metrics,
            max_batch=config.max_batch,
            flush_interval=config.flush_interval,
            retry=RetryPolicy(**config.retry_on_failure.model_dump()),
        )

    @property
    def name(self) -> str:
        return self.exporter.name

    def _count_skip(self, reason: str, detail: str) -> None:
        self.metrics.exporter_skipped.labels(self.name, reason).inc()
        count, _ = self._skipped.get(reason, (0, ""))
        self._skipped[reason] = (count + 1, detail)

    def _take_skips(self) -> list[Skipped]:
        """The skips counted since the claim was taken, for the settlement that moves past them."""
        taken = [Skipped(reason, count, detail) for reason, (count, detail) in self._skipped.items()]
        self._skipped.clear()
        return taken

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"exporter {self.name}")

    async def stop(self) -> None:
        """Let a batch in flight finish (up to STOP_GRACE_SECONDS), then give the lease up."""
        self._stop.set()
        if self._task is None:  # never started: nothing claimed, no lease
            self.exporter.close()
            self._thread.shutdown(wait=False)
            return
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, STOP_GRACE_SECONDS)
            except TimeoutError:  # wait_for cancelled it: the batch stays claimed and is sent again
                log.warning("exporter %s: stopped with a batch in flight; it is sent again at the next start", self.name)
            self._task = None
        try:
            await self._in_thread(self.outbox.release, self.name, self.owner)
        except (StorageError, OSError) as error:  # the lease expires by itself
            log.warning("exporter %s: could not release its lease: %s", self.name, error)
        self.exporter.close()
        self._thread.shutdown(wait=False)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                more = await self.step()
            except Exception:  # a store error: log and keep going, nothing was lost
                log.exception("exporter %s: outbox step failed; retrying in %.0f s", self.name, self.flush_interval)
                more = False
            if not more:
                await self._sleep(self.flush_interval)

    async def step(self) -> bool:
        """Claim and send one batch. True when a full batch went out: more may be waiting right
        away. After a smaller one the loop waits `flush_interval`, so that a trickle of records
        goes out in batches too, not one request (and four small transactions) per record."""
        claimed = await self._in_thread(
            self.outbox.claim,
            self.name,
            self.where,
            self.max_batch,
            self.owner,
            time.time_ns(),
            int(LEASE_SECONDS * 1e9),
            self.exporter.item_of,
        )
        if claimed is None:
            return False
        if isinstance(claimed, NotDue):  # waited out here: the batch is due when this returns
            self._note_lease(claimed)
            wait = max(0.0, (claimed.until - time.time_ns()) / 1e9)
            # Another process's lease: asked again now and then, so that its holder's death on this
            # machine (store/outbox.py holder_is_gone) hands the exporter over in about a second.
            await self._sleep(wait if claimed.held_by is None else min(wait, LEASE_POLL_SECONDS))
            return True
        self._note_lease(None)
        self._skipped.clear()  # of an earlier attempt whose settlement failed: this one skips them again
        try:
            if isinstance(self.exporter, RecordSender):
                return await self._in_thread(self._send_each, self.exporter, claimed)
            outcome = await self._in_thread(self.exporter.send, claimed)
            await self._in_thread(self._settle, claimed, outcome)
        except LeaseLost as error:
            log.warning("exporter %s: %s; the other process sends this batch again", self.name, error)
            return False
        return not isinstance(outcome, (RetryLater, LongBackoff, Paused)) and len(claimed.seqs) >= self.max_batch

    def _send_each(self, sender: RecordSender, claim: Claim) -> bool:
        """Send the claim's records one request each, committing each settled one before the next
        (on the exporter's thread). True when the whole batch was settled."""
        full = len(claim.seqs) >= self.max_batch
        while claim.seqs:
            if self._stop.is_set():  # the rest stays claimed; the next start sends it
                return False
            outcome = sender.send_record(claim, 0)
            if isinstance(outcome, Delivered):
                claim = self._progress(claim, Partial(1, outcome))
            elif isinstance(outcome, Dead):
                claim = self._progress(claim, Partial(1, outcome, {0: outcome.reason}))
            else:
                self._settle(claim, outcome)
                return False
        return full

    def _progress(self, claim: Claim, partial: Partial) -> Claim:
        rest = self.outbox.progress(
            claim, self.owner, time.time_ns(), partial.done, partial.dead, int(LEASE_SECONDS * 1e9), self._take_skips()
        )
        self.metrics.exported_records.labels(self.name, "delivered").inc(partial.done - len(partial.dead))
        if partial.dead:
            self.metrics.exported_records.labels(self.name, "dead").inc(len(partial.dead))
            log.error(
                "exporter %s: %d records are dead deliveries: %s. List them with `spanmeter deliveries list`,"
                " send them again with `spanmeter deliveries retry`",
                self.name, len(partial.dead), next(iter(partial.dead.values())),
            )
        return rest

    def _settle(self, claim: Claim, outcome: Outcome) -> None:
        if isinstance(outcome, Partial):
            claim = self._progress(claim, outcome)
            if not claim.seqs:
                return
            outcome = outcome.then
        now = time.time_ns()
        count = len(claim.seqs)
        skipped = self._take_skips()  # stored only if the records are settled as delivered
        if isinstance(outcome, Delivered):
            self.outbox.delivered(claim, self.owner, now, skipped)
            self.metrics.exported_records.labels(self.name, "delivered").inc(count)
            if claim.attempts:  # said once, after the warnings of its failures
                log.info("exporter %s: delivering again: %d records delivered after %d failed attempts",
                         self.name, count, claim.attempts)
            else:
                log.debug("exporter %s: delivered %d records (%s)", self.name, count, claim.message_id)
            return
        if isinstance(outcome, Dead):
            self._give_up(claim, now, outcome.reason)
            return
        self.metrics.export_failures.labels(self.name).inc()
        attempts = claim.attempts + 1
        if isinstance(outcome, Paused):
            delay = self.retry.max_interval
            log.error("exporter %s: paused: %s; trying again every %.0f s", self.name, outcome.reason, delay)
        elif isinstance(outcome, LongBackoff):
            delay = max(self.retry.long_interval, min(outcome.retry_after or 0.0, MAX_RETRY_AFTER))
            log.error(
                "exporter %s: %d records held: %s; the target asks to come back later: trying again in %.0f s"
                " (the records are kept)", self.name, count, outcome.reason, delay,
            )
        else:
            elapsed = (now - (claim.failing_since or now)) / 1e9
            if self.retry.max_elapsed_time and elapsed >= self.retry.max_elapsed_time:
                self._give_up(
                    claim, now, f"gave up after {attempts} attempts over {elapsed:.0f} s; last: {outcome.reason}"
                )
                return
            delay = self.retry.delay(attempts, outcome.retry_after)
            log.warning(
                "exporter %s: %d records not delivered (attempt %d): %s; retrying in %.1f s",
                self.name, count, attempts, outcome.reason, delay,
            )
        self.outbox.retry_later(
            claim, self.owner, now, now + int(delay * 1e9), outcome.reason,
            counts_toward_give_up=isinstance(outcome, RetryLater),
        )

    def _give_up(self, claim: Claim, now: int, reason: str) -> None:
        self.outbox.dead(claim, self.owner, now, reason)
        self.metrics.exported_records.labels(self.name, "dead").inc(len(claim.seqs))
        log.error(
            "exporter %s: %d records are dead deliveries: %s. List them with `spanmeter deliveries list`, "
            "send them again with `spanmeter deliveries retry`",
            self.name, len(claim.seqs), reason,
        )

    def _note_lease(self, not_due: NotDue | None) -> None:
        holder = not_due.held_by if not_due is not None else None
        if holder != self._waiting_for:
            if holder is not None:
                log.warning(
                    "exporter %s: another spanmeter process on this database is running it; this one waits "
                    "and takes over if that one stops", self.name,
                )
            else:
                log.info("exporter %s: running it in this process", self.name)
            self._waiting_for = holder

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass
