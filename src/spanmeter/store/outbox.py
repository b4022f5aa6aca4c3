"""The outbox: what exporters need from a backend to send every stored record exactly once.

A record is pending for an exporter from the moment it is committed: a delivery cannot be lost
between the commit and the send, because the stored record *is* the pending delivery. Each
exporter keeps a position in the store's insertion order (`seq`); the records past it that match
its filter are its pending deliveries, in order. The store's single writer assigns `seq` in
commit order (SQLite), so a position never passes a record that is not yet visible.

An outbox could hold one row per (record, matching exporter), written with the records. Here only
the exceptions get rows: dead deliveries, and dead ones sent again from the CLI. That keeps the
outbox off the ingest path entirely (no extra row, index entry or WAL page per record) and gives
the same guarantees: committed with the records, claimed, delivered / retry-later / dead.

A claim is a batch an exporter is sending. It is kept (`claim_end`) until it is delivered or dead,
so a retry sends the same records with the same message id: receivers de-duplicate on it.
Exporter-level state (attempts, next attempt, last error) is the backoff of the batch in hand:
a target that fails fails for the records behind it too, so they wait in order.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from spanmeter.errors import SpanmeterError
from spanmeter.record import UsageRecord

# pending: waiting to be sent again, after a failed attempt (the batch in hand, in backoff) or
# because `spanmeter deliveries retry` sent dead deliveries again; not delivered yet.
DELIVERY_STATES: Final = ("dead", "pending")
StartAt = Literal["now", "beginning"]
ItemOf = Callable[[UsageRecord], str]  # a record as the query API's item JSON text


@dataclass(slots=True, frozen=True)
class ExportFilter:
    """Which records an exporter receives; an empty tuple matches everything."""

    workspaces: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()

    def matches(self, record: UsageRecord) -> bool:
        return (
            (not self.workspaces or record.workspace in self.workspaces)
            and (not self.kinds or record.kind in self.kinds)
            and (not self.types or record.type in self.types)
            and (not self.customers or record.customer_id in self.customers)
        )


@dataclass(slots=True)
class Claim:
    """A batch one exporter is sending: new records `(start, end]` in seq order, or dead
    deliveries sent again (`requeued`). It carries the records as `UsageRecord`s, or as the query
    API's item JSON texts (`items`) for exporters that send those: whichever the claim asked for."""

    exporter: str
    seqs: list[int]
    requeued: bool
    records: list[UsageRecord] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    start: int = 0  # new records: the position the batch follows
    end: int = 0  # new records: the last seq the batch covers (records past a filter included)
    attempts: int = 0  # failed attempts of this batch so far
    failing_since: int | None = None  # ns of its first failed attempt

    @property
    def message_id(self) -> str:
        """Stable across retries of the same batch: the receiver's de-duplication key."""
        if self.requeued:
            basis = f"{self.exporter}\0requeued\0{','.join(map(str, self.seqs))}"
        else:
            basis = f"{self.exporter}\0{self.start}\0{self.end}"
        return "msg_" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def _pid_namespace() -> str | None:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux: a holder's liveness cannot be told, its lease is waited out
        return None


def new_owner() -> str:
    """A lease owner id: unique, and naming the process (host, PID namespace, pid) that holds it,
    so that a restart on the same machine can tell its killed predecessor is gone."""
    return f"{uuid.uuid4().hex}@{socket.gethostname()}/{_pid_namespace()}/{os.getpid()}"


def holder_is_gone(owner: str) -> bool:
    """True when `owner` was a process of this host and PID namespace that no longer runs (killed,
    crashed): its lease can be taken at once instead of after it expires. False whenever unsure
    (another host or namespace, not Linux, or the pid is in use): then the lease is waited out, so
    two live processes never send the same batch."""
    _, at, where = owner.partition("@")
    host, _, rest = where.partition("/")
    namespace, _, pid = rest.rpartition("/")
    here = _pid_namespace()
    if not at or here is None or host != socket.gethostname() or namespace != here or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # this process: another runner of it, or itself before a restart of the runner
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


class LeaseLost(SpanmeterError):
    """Another process took this exporter's lease (this one stalled past it): stop the batch."""


@dataclass(slots=True, frozen=True)
class NotDue:
    """Nothing to send now: `until` (ns) is the batch's next attempt, or a lease held elsewhere."""

    until: int
    held_by: str | None = None  # another process's lease on this exporter


@dataclass(slots=True, frozen=True)
class Delivery:
    exporter: str
    seq: int
    record_id: str
    workspace: str
    customer_id: str | None
    kind: str
    type: str
    state: str
    attempts: int
    reason: str | None
    updated_at: int


@dataclass(slots=True, frozen=True)
class Skipped:
    """Records an exporter left out, unsent, for one reason (e.g. Fluxrate's `no_meter_token`):
    never billed through it. Stored with the outbox's settlement of those records, so each counts once."""

    reason: str  # a short fixed name, the /metrics label
    count: int
    detail: str  # the latest one's: what was skipped and what to change so that such records are sent
    updated_at: int = 0  # ns of the latest one's settlement (0 before it is stored)


@dataclass(slots=True, frozen=True)
class ExporterState:
    exporter: str
    position: int
    behind: int  # records stored past the position (before the exporter's filter)
    claim_end: int | None
    attempts: int
    next_attempt_at: int
    last_error: str | None
    dead: int
    pending: int  # records waiting to be sent again: the failed batch in hand, or re-sent dead ones
    lease_owner: str | None
    lease_until: int | None
    updated_at: int
    delivered: int = 0  # records delivered since the exporter was registered
    retried: int = 0  # failed attempts since then (each retried later)
    oldest_pending_at: int | None = None  # received_at (ns) of its oldest record not sent yet
    skipped: tuple[Skipped, ...] = ()  # records left out, unsent, per reason, since it was registered


@dataclass(slots=True, frozen=True)
class Requeued:
    count: int
    exporters: list[str] = field(default_factory=list)
