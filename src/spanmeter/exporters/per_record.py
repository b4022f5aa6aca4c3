"""A base for exporters whose target takes one record per JSON POST (LLMtrack, Spryngtime, ...).

A subclass builds the body of one record and names its status table; this class posts it and
classifies the answer:

    class LLMtrackExporter(PerRecordExporter):
        path = "/api/ingest"
        policy = StatusPolicy({**REST_TABLE})

        def body(self, record: UsageRecord) -> dict[str, Any] | None:
            if record.provider is None:
                raise Unsendable("the record has no provider; LLMtrack requires one")   # a dead delivery
            return {"provider": record.provider, ...}   # None: not for this target, skipped

The runner sends a claim's records one request each and commits each accepted record before it
sends the next (exporters/runner.py, `RecordSender`): a record the target accepted is never sent
again by a retry, and after a restart the next claim starts past it.

What remains, and cannot be closed for a target without idempotency keys: if the process dies
(kill -9, power loss) after the target accepted a record and before spanmeter committed that
(the time of one small SQLite commit, well under a millisecond to a few milliseconds), that one
record is sent again at the next start. One record per request keeps this window to at most one
record per exporter. Targets with an idempotency key (Fluxrate) de-duplicate it themselves.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

import spanmeter
from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Outcome, Partial, Paused, RetryLater
from spanmeter.exporters.policy import StatusPolicy
from spanmeter.record import UsageRecord
from spanmeter.store.outbox import Claim, ItemOf

Answer = Delivered | RetryLater | LongBackoff | Paused | Dead


class Unsendable(Exception):
    """Raised by `body` for a record the target's contract cannot express (a required value the
    record lacks): it becomes a dead delivery with this message as the reason, and the next
    records go on. Records are immutable, so sending it again only helps after a config change
    (`spanmeter deliveries retry`)."""


class PerRecordExporter(ABC):
    path: ClassVar[str] = ""  # appended to the configured endpoint ("" when the endpoint is the full URL)
    policy: ClassVar[StatusPolicy]
    item_of: ItemOf | None = None  # claims carry UsageRecords

    def __init__(self, name: str, endpoint: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0):
        self.name = name
        self.url = endpoint.rstrip("/") + self.path if self.path else endpoint
        self._headers = {
            "content-type": "application/json",
            "user-agent": f"spanmeter/{spanmeter.__version__}",
            **(headers or {}),
        }
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    @abstractmethod
    def body(self, record: UsageRecord) -> dict[str, Any] | None:
        """The JSON body for one record, exactly the target's documented fields; None when the
        record is not for this target (it is skipped, and counts as delivered). Raises
        Unsendable for a record the target cannot take."""

    def classify(self, response: httpx.Response) -> Answer:
        """The outcome of the target's answer; override for answers the table cannot tell apart."""
        return self.policy.outcome(response, self.url)

    def post(self, body: dict[str, Any]) -> Answer:
        """POST one JSON body and classify the answer (also for a type's `check`)."""
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = self._client.post(self.url, content=content, headers=self._headers)
        except httpx.HTTPError as error:
            return self.policy.unreachable(error, self.url)
        return self.classify(response)

    def send_record(self, claim: Claim, index: int) -> Answer:
        try:
            body = self.body(claim.records[index])
        except Unsendable as error:
            return Dead(str(error))
        return Delivered() if body is None else self.post(body)

    def send(self, claim: Claim) -> Outcome:
        """The whole batch in one call (the Exporter protocol). The runner uses send_record
        instead, committing after each record; this is for callers without an outbox."""
        dead: dict[int, str] = {}
        for index in range(len(claim.seqs)):
            outcome = self.send_record(claim, index)
            if isinstance(outcome, Dead):
                dead[index] = outcome.reason
            elif not isinstance(outcome, Delivered):
                return Partial(index, outcome, dead) if index else outcome
        return Partial(len(claim.seqs), Delivered(), dead) if dead else Delivered()

    def close(self) -> None:
        self._client.close()
