"""What an exporter answers for one batch, and the protocol every exporter type implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from spanmeter.store.outbox import Claim, ItemOf


@dataclass(slots=True, frozen=True)
class Delivered:
    pass


@dataclass(slots=True, frozen=True)
class RetryLater:
    """A passing failure (target down, 429, 5xx): send the same batch again after a backoff."""

    reason: str
    retry_after: float | None = None  # seconds the target asked for (Retry-After)


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


Outcome = Delivered | RetryLater | Paused | Dead


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
