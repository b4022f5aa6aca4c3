"""Pre-aggregation for the `fluxrate` exporter (`aggregation::enabled`): one event per window.

Records are summed per (workspace, customer, meter token, window) and each window's total is sent
once, after its grace period, as one Fluxrate event whose `idempotency_key` is a hash of
(workspace, customer, meter token, window start) and whose `timestamp` is the window's start.
The rules, which make every record count exactly once:

- A record's window is [start, start + window), start being its `occurred_at` rounded down to a
  multiple of `window` (from the Unix epoch, UTC).
- When the exporter reads a record, it is summed into its window only if the window is open: it
  has started, its end plus `grace` has not passed, and its total is not being sent. Otherwise
  the record is late and is sent on its own, with its own idempotency key: a window's total never
  changes once it is sent, so nothing is lost or counted twice.
- A window whose end plus `grace` has passed is closed (its total frozen, durably) before it is
  sent; after a crash a closed window is sent again with the same total and the same key, which
  Fluxrate de-duplicates.
- The windows live in a SQLite file of their own (`aggregation::state_path`), with the last
  outbox position summed (`absorbed_through`), written in one transaction before the outbox
  moves past those records. If the process dies between the two, the outbox hands the same
  records again and those at or before `absorbed_through` are not summed twice.
- Records skipped (no meter token, no quantity) are counted in the store when the outbox moves
  past them; a record summed before a crash is mapped again, so that its skip is counted then.
- When `window` changes, windows of the new length start at the first multiple of it after the
  change, so no new window shares a start (and so a key) with one sent under the old length.

Every process that may run this exporter must use the same state file: one machine. A window
Fluxrate refuses for good (400/422) is kept in the file as `dead` and logged with its key and
total for manual reconciliation (`spanmeter exporters status` counts them, with the last error:
`dead_windows`); failures of windows are retried with back-off, never given up.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Outcome, Partial, Paused, RetryLater
from spanmeter.exporters.fluxrate import FluxrateConfig, FluxrateExporter, Usage
from spanmeter.exporters.per_record import Answer, Unsendable
from spanmeter.exporters.runner import RetryPolicy
from spanmeter.exporters.settings import RetryOnFailure
from spanmeter.priority import lower_this_thread
from spanmeter.record import decimal_string, format_ns
from spanmeter.store.outbox import Claim, ItemOf

log = logging.getLogger(__name__)

SENT_KEPT_NS: Final = 86_400 * 10**9  # sent windows are kept a day past their due time, then forgotten
JOIN_SECONDS: Final = 2.0

SCHEMA: Final = (
    (
        "CREATE TABLE IF NOT EXISTS fluxrate_windows (exporter TEXT NOT NULL, workspace TEXT NOT NULL,"
        " customer TEXT NOT NULL, meter_token TEXT NOT NULL, start_ns INTEGER NOT NULL, due_ns INTEGER NOT NULL,"
        " quantity TEXT NOT NULL, records INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT,"
        " updated_ns INTEGER NOT NULL, PRIMARY KEY (exporter, workspace, customer, meter_token, start_ns))"
    ),
    "CREATE INDEX IF NOT EXISTS fluxrate_windows_due ON fluxrate_windows (exporter, state, due_ns)",
    (
        "CREATE TABLE IF NOT EXISTS fluxrate_progress (exporter TEXT PRIMARY KEY,"
        " absorbed_through INTEGER NOT NULL, window_ns INTEGER NOT NULL, window_since_ns INTEGER NOT NULL)"
    ),
    # late records refused for good whose outbox settlement may not be committed yet: reported dead again
    (
        "CREATE TABLE IF NOT EXISTS fluxrate_lone_dead (exporter TEXT NOT NULL, seq INTEGER NOT NULL,"
        " reason TEXT NOT NULL, PRIMARY KEY (exporter, seq))"
    ),
)
OPEN, CLOSING, SENT, DEAD = "open", "closing", "sent", "dead"


@dataclass(slots=True, frozen=True)
class Window:
    workspace: str
    customer: str
    meter_token: str
    start_ns: int
    due_ns: int
    quantity: Decimal
    records: int
    state: str

    @property
    def key(self) -> str:
        basis = "\0".join((self.workspace, self.customer, self.meter_token, str(self.start_ns)))
        return "spanmeter_window_" + hashlib.sha256(basis.encode()).hexdigest()[:32]

    def usage(self) -> Usage:
        return Usage(self.meter_token, self.customer, self.quantity, self.start_ns, self.key, None, self.workspace)


@dataclass(slots=True, frozen=True)
class Absorbed:
    """What `WindowState.absorb` did with a claim from an index on."""

    lone: int  # index of the first record to send on its own (len(claim.seqs): none)
    usage: Usage | None  # that record's event
    dead: dict[int, str]  # records refused for good before a crash, at indexes before `lone`
    unsendable: str | None = None  # why the record at `lone` cannot be sent at all (a dead delivery)


@dataclass(slots=True, frozen=True)
class DeadWindows:
    """An exporter's windows Fluxrate refused for good, kept in its state file for reconciliation."""

    count: int | None  # None: the state file could not be read (`last_error` says why)
    last_error: str | None  # the reason of the latest one


def dead_windows(path: Path, exporter: str) -> DeadWindows:
    """`exporter`'s dead windows in the state file at `path`, read without changing anything
    (none while the file or its tables do not exist yet)."""
    if not path.exists():
        return DeadWindows(0, None)
    try:
        conn = sqlite3.connect(path, timeout=30.0)
        try:
            where = [exporter, DEAD]
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM fluxrate_windows WHERE exporter = ? AND state = ?", where
            ).fetchone()
            last = conn.execute(
                "SELECT reason FROM fluxrate_windows WHERE exporter = ? AND state = ? ORDER BY updated_ns DESC LIMIT 1",
                where,
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as error:
        if "no such table" in str(error):
            return DeadWindows(0, None)
        return DeadWindows(None, f"cannot read the aggregation state file {path}: {error}")
    return DeadWindows(int(count), None if last is None else last[0])


def dead_windows_by_exporter(configs: Mapping[str, object]) -> dict[str, DeadWindows]:
    """The dead windows of each configured Fluxrate exporter that aggregates, by exporter id."""
    return {
        name: dead_windows(Path(config.aggregation.state_path), name)
        for name, config in configs.items()
        if isinstance(config, FluxrateConfig) and config.aggregation.enabled and config.aggregation.state_path
    }


def _map_again(usage_of: Callable[[int], Usage | None], index: int) -> None:
    """Map a record summed before the outbox settled it, only so that a skip is counted again
    (`usage_of` counts it): skips reach the store with the outbox's settlement, which the crash
    lost; the sum and the dead ones are kept in the state file."""
    try:
        usage_of(index)
    except Unsendable:  # was a dead delivery: in fluxrate_lone_dead
        pass


class WindowState:
    """One exporter's windows and summed position, in a SQLite file (WAL, synchronous FULL)."""

    def __init__(self, path: Path, exporter: str) -> None:
        self.exporter = exporter
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self._conn.execute(statement)

    def begin(self, window_ns: int, now_ns: int) -> tuple[int, int]:
        """(absorbed_through, window_since_ns) for this window length; a new length takes effect at
        its first window start after now (windows so far all started at or before now)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT absorbed_through, window_ns, window_since_ns FROM fluxrate_progress WHERE exporter = ?",
                [self.exporter],
            ).fetchone()
            if row is not None and row[1] == window_ns:
                return int(row[0]), int(row[2])
            since = 0 if row is None else (now_ns // window_ns + 1) * window_ns  # after every window so far
            through = 0 if row is None else int(row[0])
            self._conn.execute(
                "INSERT OR REPLACE INTO fluxrate_progress VALUES (?, ?, ?, ?)", [self.exporter, through, window_ns, since]
            )
            if row is not None:
                log.warning("exporter %s: aggregation window changed; windows of the new length start at %s",
                            self.exporter, format_ns(since))
            return through, since

    def absorb(
        self, claim: Claim, first: int, now_ns: int, usage_of: Callable[[int], Usage | None],
        window_ns: int, grace_ns: int, since_ns: int,
    ) -> Absorbed:
        """Sum the claim's records from index `first` into their open windows, in one transaction,
        up to the first one that must go on its own."""
        dead: dict[int, str] = {}
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                (through,) = conn.execute(
                    "SELECT absorbed_through FROM fluxrate_progress WHERE exporter = ?", [self.exporter]
                ).fetchone()
                for index in range(first, len(claim.seqs)):
                    seq = claim.seqs[index]
                    if seq <= through:  # summed (or sent on its own) before a crash
                        found = conn.execute(
                            "SELECT reason FROM fluxrate_lone_dead WHERE exporter = ? AND seq = ?", [self.exporter, seq]
                        ).fetchone()
                        if found is not None:
                            dead[index] = found[0]
                        else:  # mapped again, not summed: a skip is stored with the outbox's settlement only
                            _map_again(usage_of, index)
                        continue
                    try:
                        usage = usage_of(index)
                    except Unsendable as error:
                        self._through(through)
                        conn.execute("COMMIT")
                        return Absorbed(index, None, dead, str(error))
                    if usage is not None:
                        start = usage.occurred_at - usage.occurred_at % window_ns
                        due = start + window_ns + grace_ns
                        if not self._add(usage, start, due, now_ns, since_ns):
                            self._through(through)
                            conn.execute("COMMIT")
                            return Absorbed(index, usage, dead)
                    through = seq
                self._through(through)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return Absorbed(len(claim.seqs), None, dead)

    def _through(self, seq: int) -> None:
        self._conn.execute(
            "UPDATE fluxrate_progress SET absorbed_through = max(absorbed_through, ?) WHERE exporter = ?",
            [seq, self.exporter],
        )

    def _add(self, usage: Usage, start: int, due: int, now_ns: int, since_ns: int) -> bool:
        """Add to the record's window if it is open (False: the record goes on its own)."""
        if start < since_ns or start > now_ns or now_ns >= due:
            return False
        where = [self.exporter, usage.workspace, usage.customer, usage.meter_token, start]
        row = self._conn.execute(
            "SELECT quantity, state FROM fluxrate_windows WHERE exporter = ? AND workspace = ? AND customer = ?"
            " AND meter_token = ? AND start_ns = ?", where,
        ).fetchone()
        if row is None:
            self._conn.execute(
                "INSERT INTO fluxrate_windows VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, NULL, ?)",
                [*where, due, decimal_string(usage.quantity), OPEN, now_ns],
            )
            return True
        if row[1] != OPEN:
            return False
        total = decimal_string(Decimal(row[0]) + usage.quantity)
        self._conn.execute(
            "UPDATE fluxrate_windows SET quantity = ?, records = records + 1, updated_ns = ? WHERE exporter = ?"
            " AND workspace = ? AND customer = ? AND meter_token = ? AND start_ns = ?", [total, now_ns, *where],
        )
        return True

    def absorbed_through(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT absorbed_through FROM fluxrate_progress WHERE exporter = ?", [self.exporter]
            ).fetchone()
        return 0 if row is None else int(row[0])

    def lone_settled(self, seq: int, dead_reason: str | None = None) -> None:
        """The record at `seq` was sent on its own (or refused for good: `dead_reason`)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._through(seq)
            if dead_reason is not None:
                self._conn.execute("INSERT OR REPLACE INTO fluxrate_lone_dead VALUES (?, ?, ?)",
                                   [self.exporter, seq, dead_reason])
            self._conn.execute("COMMIT")

    def outbox_at(self, position: int) -> None:
        """The outbox settled every record up to `position`: their dead reasons are no longer needed."""
        with self._lock:
            self._conn.execute("DELETE FROM fluxrate_lone_dead WHERE exporter = ? AND seq <= ?", [self.exporter, position])

    def due(self, now_ns: int) -> list[Window]:
        """Open and closing windows whose grace period is over, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT workspace, customer, meter_token, start_ns, due_ns, quantity, records, state"
                " FROM fluxrate_windows WHERE exporter = ? AND state IN (?, ?) AND due_ns <= ? ORDER BY due_ns",
                [self.exporter, OPEN, CLOSING, now_ns],
            ).fetchall()
        return [Window(w, c, m, s, d, Decimal(q), n, st) for w, c, m, s, d, q, n, st in rows]

    def windows(self) -> list[Window]:
        """Every window in the file (for tests and inspection)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT workspace, customer, meter_token, start_ns, due_ns, quantity, records, state"
                " FROM fluxrate_windows WHERE exporter = ? ORDER BY start_ns, customer, meter_token", [self.exporter]
            ).fetchall()
        return [Window(w, c, m, s, d, Decimal(q), n, st) for w, c, m, s, d, q, n, st in rows]

    def set_state(self, window: Window, state: str, now_ns: int, reason: str | None = None) -> Window:
        """Move `window` to `state`; returns it as stored (its total is final from `closing` on)."""
        where = [self.exporter, window.workspace, window.customer, window.meter_token, window.start_ns]
        cond = "exporter = ? AND workspace = ? AND customer = ? AND meter_token = ? AND start_ns = ?"
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f"UPDATE fluxrate_windows SET state = ?, reason = ?, updated_ns = ? WHERE {cond}",
                               [state, reason, now_ns, *where])
            quantity, records = self._conn.execute(
                f"SELECT quantity, records FROM fluxrate_windows WHERE {cond}", where
            ).fetchone()
            self._conn.execute("COMMIT")
        return Window(window.workspace, window.customer, window.meter_token, window.start_ns, window.due_ns,
                      Decimal(quantity), records, state)

    def forget_sent(self, before_ns: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM fluxrate_windows WHERE exporter = ? AND state = ? AND due_ns < ?",
                               [self.exporter, SENT, before_ns])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class WindowedFluxrateExporter:
    """The `fluxrate` exporter with pre-aggregation: the runner's batches are summed into windows
    (late records are sent at once, on their own); a thread of its own sends the windows that are
    due, every `tick` seconds, retrying failures with back-off and never giving a window up."""

    item_of: ItemOf | None = None  # claims carry UsageRecords

    def __init__(
        self,
        sender: FluxrateExporter,
        state: WindowState,
        *,
        window: float,
        grace: float,
        tick: float = 1.0,
        retry: RetryOnFailure | None = None,
        clock: Callable[[], int] = time.time_ns,
        background: bool = True,
    ) -> None:
        self.name = sender.name
        self.sender = sender
        self.state = state
        self.window_ns = max(1, round(window * 1e9))
        self.grace_ns = round(grace * 1e9)
        self.clock = clock
        self.tick = tick
        retry = retry or RetryOnFailure()
        self._retry = RetryPolicy(retry.initial_interval, retry.max_interval, 0.0, long_interval=retry.long_interval)
        self._failures = 0
        self._next_attempt_ns = 0
        _, self._since_ns = state.begin(self.window_ns, clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._flush_loop, name=f"spanmeter-{self.name}-windows", daemon=True)
            self._thread.start()

    def count_skips(self, count: Callable[[str, str], None]) -> None:
        self.sender.count_skips(count)

    def send(self, claim: Claim) -> Outcome:
        if claim.requeued:  # dead late records sent again: never part of a window
            return self.sender.send(claim)
        through = self.state.absorbed_through()
        if through > claim.end:  # summed past what the store has: not this database's state file
            return Paused(
                f"the aggregation state file {self.state.path} has summed records up to position {through}, past"
                f" the store's {claim.end}: it belongs to another database (or the database was replaced)."
                " Point aggregation::state_path at this database's file, or move this one away to start afresh"
            )
        self.state.outbox_at(claim.start)
        dead: dict[int, str] = {}
        first = 0
        while first < len(claim.seqs):
            absorbed = self.state.absorb(
                claim, first, self.clock(), lambda i: self.sender.mapping.usage(claim.records[i]),
                self.window_ns, self.grace_ns, self._since_ns,
            )
            dead.update(absorbed.dead)
            index = absorbed.lone
            if absorbed.unsendable is not None:
                outcome: Answer = Dead(absorbed.unsendable)
            elif absorbed.usage is None:
                break
            else:
                outcome = self.sender.post(absorbed.usage.body())
            if isinstance(outcome, Delivered):
                self.state.lone_settled(claim.seqs[index])
            elif isinstance(outcome, Dead):
                self.state.lone_settled(claim.seqs[index], outcome.reason)
                dead[index] = outcome.reason
            else:
                return Partial(index, outcome, dead) if index else outcome
            first = index + 1
        return Partial(len(claim.seqs), Delivered(), dead) if dead else Delivered()

    def flush_due(self) -> None:
        """Send every window whose grace period is over (unless the target is in back-off)."""
        now = self.clock()
        if now < self._next_attempt_ns:
            return
        for window in self.state.due(now):
            if self._stop.is_set():
                return
            closed = self.state.set_state(window, CLOSING, now) if window.state == OPEN else window
            outcome = self.sender.post(closed.usage().body())
            if isinstance(outcome, Delivered):
                self.state.set_state(closed, SENT, self.clock())
                if self._failures:
                    log.info("exporter %s: windows delivered again after %d failed attempts", self.name, self._failures)
                self._failures = 0
            elif isinstance(outcome, Dead):
                self.state.set_state(closed, DEAD, self.clock(), outcome.reason)
                log.error(
                    "exporter %s: Fluxrate refused the window total for good (customer %s, meter %s, window %s,"
                    " quantity %s, idempotency_key %s): %s; kept in %s for manual reconciliation", self.name,
                    closed.customer, closed.meter_token, format_ns(closed.start_ns), decimal_string(closed.quantity),
                    closed.key, outcome.reason, self.state.path,
                )
            else:
                self._back_off(outcome)
                return
        self.state.forget_sent(now - SENT_KEPT_NS)

    def _back_off(self, outcome: RetryLater | LongBackoff | Paused) -> None:
        self._failures += 1
        if isinstance(outcome, Paused):
            delay = self._retry.max_interval
            log.error("exporter %s: paused: %s; window totals are kept, trying again every %.0f s",
                      self.name, outcome.reason, delay)
        elif isinstance(outcome, LongBackoff):
            delay = max(self._retry.long_interval, outcome.retry_after or 0.0)
            log.error("exporter %s: %s; window totals are kept, trying again in %.0f s", self.name, outcome.reason, delay)
        else:
            delay = self._retry.delay(self._failures, outcome.retry_after)
            log.warning("exporter %s: window totals not delivered (attempt %d): %s; retrying in %.1f s",
                        self.name, self._failures, outcome.reason, delay)
        self._next_attempt_ns = self.clock() + int(delay * 1e9)

    def _flush_loop(self) -> None:
        lower_this_thread("exporter")  # like the runner's thread: ingest gets the core first
        while not self._stop.wait(self.tick):
            try:
                self.flush_due()
            except Exception:  # the state file or the network: logged, tried again at the next tick
                log.exception("exporter %s: sending due windows failed; trying again in %.1f s", self.name, self.tick)

    def close(self) -> None:
        """Stop sending windows (the open ones stay in the state file for the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_SECONDS)
            if self._thread.is_alive():  # a request in flight: the daemon thread ends with it
                return
        self.sender.close()
        self.state.close()
