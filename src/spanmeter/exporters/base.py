"""What an exporter answers for one batch, and the protocols every exporter type implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from spanmeter.store.outbox import Claim, ItemOf
from spanmeter.store.port import QueryStore


@dataclass(slots=True, frozen=True)
class Delivered:
    pass


@dataclass(slots=True, frozen=True)
class RetryLater:
    """A passing failure (target down, 429, 5xx): send the same batch again after a backoff."""

    reason: str
    retry_after: float | None = None  # seconds the target asked for (Retry-After)


@dataclass(slots=True, frozen=True)
class LongBackoff:
    """The target asks to come back much later (402: the account's plan quota is used up): the
    batch is tried again after `retry_on_failure::long_interval` (hours), or `retry_after` if
    longer. Like Paused, never turns records dead: they wait for the quota."""

    reason: str
    retry_after: float | None = None


@dataclass(slots=True, frozen=True)
class Paused:
    """The target refuses spanmeter itself (credentials, endpoint gone): nothing can succeed until
    an operator acts. Retried at the policy's longest interval; never turns records dead."""

    reason: str


@dataclass(slots=True, frozen=True)
class Dead:
    """The target refused these records for good (malformed for it): they become dead deliveries,
    listed by `spanmeter deliveries list` and sent again by `spanmeter deliveries retry`."""

    reason: str


@dataclass(slots=True, frozen=True)
class Partial:
    """The target settled the batch's first `done` records (in claim order): accepted, except
    those at the indexes in `dead` (refused for good, with the reason). `then` is the outcome of
    the rest. The runner commits the settled ones before anything else, so they are never sent
    again; after a retry the rest goes out as a batch of its own (with a new message id)."""

    done: int
    then: Delivered | RetryLater | LongBackoff | Paused | Dead
    dead: Mapping[int, str] = field(default_factory=dict)


Outcome = Delivered | RetryLater | LongBackoff | Paused | Dead | Partial


class Exporter(Protocol):
    name: str  # its id in the config, e.g. "webhook/billing"
    # Exporters that send the query API's item JSON get it built by the store (`Claim.items`),
    # with this for what the store cannot build; None: the claim carries `Claim.records`.
    item_of: ItemOf | None

    def send(self, claim: Claim) -> Outcome:
        """Send one batch and answer; never raise for the target's failures. Runs on the
        exporter's own thread (exporters/runner.py), so it may block."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class RecordSender(Protocol):
    """An exporter whose target takes one record per request (exporters/per_record.py). The
    runner calls `send_record` for each record of a claim in turn and commits each accepted one
    before sending the next: a target without idempotency keys never gets a record twice from a
    retry or a restart."""

    def send_record(self, claim: Claim, index: int) -> Delivered | RetryLater | LongBackoff | Paused | Dead:
        """Send the claim's record at `index` (`claim.records[index]`, or `claim.items[index]`)."""
        ...


@runtime_checkable
class SkipsRecords(Protocol):
    """An exporter that leaves some records out, unsent (e.g. Fluxrate: no meter token configured
    for them). The runner hands it a function that counts each skip on /metrics, and in the store
    with the transaction that settles the record (`spanmeter exporters status` shows them)."""

    def count_skips(self, count: Callable[[str, str], None]) -> None:
        """Call `count(reason, detail)` for every record skipped from now on, while sending it;
        `reason` is a short fixed name (a metric label), e.g. `no_meter_token`; `detail` says what
        was skipped and what to change so that such records are sent."""
        ...


@runtime_checkable
class ReadsStore(Protocol):
    """An exporter that also reads the store's records (the csv exporter rebuilds its accounts
    file from them). The runner hands it the store before the first batch."""

    def read_from(self, store: QueryStore) -> None: ...


@dataclass(slots=True, frozen=True)
class CheckResult:
    ok: bool
    summary: str  # what the target answered, for the operator


@runtime_checkable
class Checkable(Protocol):
    """An exporter that can test its target without sending a real record (`spanmeter exporters
    check NAME`), e.g. through the target's dry-run endpoint."""

    def check(self) -> CheckResult: ...
