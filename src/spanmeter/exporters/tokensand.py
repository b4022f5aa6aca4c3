"""The `tokensand` exporter: product and adoption events to tokens& usage tracking.

Target: `POST {endpoint}/api/usage/track/batch` with `Authorization: Bearer <tracking key>`
(`tk_live_...`) and the body `{"events": [EVENT, ...]}`, at most 500 events per request. Each event
has exactly the fields tokens& documents, those the record has (none is sent as null):

    {"idempotencyKey": <the record's key>, "event_name": "FIRST_API_CALL", "event_family": "activation",
     "developer_id": <user id>, "email": ..., "product": {"id", "name", "type", "version"},
     "account_domain": "company.com", "source": "SDK", "campaignId": ..., "occurredAt": "2026-...Z"}

`idempotencyKey` makes a resent batch (a retry, a restart) harmless: tokens& does not store an
event twice. Not guaranteed: records of two workspaces with the same explicit key
(`usage.idempotency_key`) sent to one tokens& company are stored there once.

Which records:
- `event` records, each as itself. tokens& needs a developer: one with neither a user id nor an email
  becomes a dead delivery saying so (`spanmeter deliveries list`).
- `llm` records only with `llm::send: true`, as an event named `llm::event_name` (family
  `llm::event_family`, product `llm::product` when the record has none).
- `meter` records never: a tokens& event has no quantity, so a meter's amount would be lost or
  miscounted. They are skipped (counted as delivered); use another exporter for meters.

Answers: tokens&'s documentation shows no answer bodies. A 2xx is the batch accepted; if its body
lists refused events the way spanmeter's own tokens&-compatible endpoint does (`{"ok": true,
"accepted", "duplicates", "errors": [{"index", "error"}]}`), those become dead deliveries with
tokens&'s reason and the rest are delivered (a duplicate was stored before); any other 2xx body
is all accepted. For the whole batch (`POLICY`): 400 and 422 dead; 401, 403 (the
tracking key), 404 and redirects (the endpoint) pause the exporter; 402 waits
`retry_on_failure::long_interval`; 429, 5xx and network errors are retried, honouring
`Retry-After`.

`spanmeter exporters check NAME` sends one sample event to `/api/usage/track/dry-run`, which
validates it and stores nothing, and prints the answer.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Final, Literal

import httpx
from pydantic import Field

import spanmeter
from spanmeter.exporters.base import CheckResult, Dead, Delivered, Outcome, Partial
from spanmeter.exporters.policy import BODY_CHARS, rest_policy
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import HttpExporterConfig, SettingsModel
from spanmeter.record import Product, UsageRecord, format_ns
from spanmeter.store.outbox import Claim, ItemOf

log = logging.getLogger(__name__)

BATCH_PATH: Final = "/api/usage/track/batch"
DRY_RUN_PATH: Final = "/api/usage/track/dry-run"
MAX_EVENTS: Final = 500  # per batch request, tokens&'s limit
NO_DEVELOPER: Final = (
    "tokens& needs a developer and the record has none: set usage.user.id (or user.id) or usage.user.email"
)
POLICY: Final = rest_policy("tokens&", "the base URL, without /api/usage/...")

Family = Literal["intent", "evaluation", "activation", "retention", "expansion", "commercial"]


class ProductConfig(SettingsModel):
    id: str | None = Field(None, description="product id")
    name: str | None = Field(None, description="product name")
    type: str | None = Field(None, description="API, model, SDK, workflow, agent, event or docs")
    version: str | None = Field(None, description="product version")


class LLMEvents(SettingsModel):
    send: bool = Field(False, description="send LLM call records too, each as one event (off: only event records)")
    event_name: str = Field("LLM_CALL", min_length=1, description="the event_name of an LLM call record")
    event_family: Family | None = Field(
        None, description="its event_family: intent, evaluation, activation, retention, expansion or commercial"
    )
    product: ProductConfig | None = Field(
        None, description="its product {id, name, type, version} when the record has none (organization keys need one)"
    )


class TokensandConfig(HttpExporterConfig):
    endpoint: str = Field(description="base URL of the tokens& API; /api/usage/track/batch is appended")
    api_key: str = Field(min_length=1, description="the company's tracking key (tk_live_...), sent as a Bearer token")
    max_batch: int = Field(MAX_EVENTS, ge=1, le=MAX_EVENTS, description="events per request at most (tokens&: 500)")
    llm: LLMEvents = Field(LLMEvents(), description="whether and how LLM call records are sent")


def product_json(product: Product | ProductConfig | None) -> dict[str, str] | None:
    """tokens&'s product object: id, name, type, version (no category), absent values left out."""
    if product is None:
        return None
    values = {"id": product.id, "name": product.name, "type": product.type, "version": product.version}
    found = {name: value for name, value in values.items() if value is not None}
    return found or None


class TokensandExporter:
    item_of: ItemOf | None = None  # claims carry UsageRecords

    def __init__(self, name: str, config: TokensandConfig) -> None:
        self.name = name
        self.base = config.endpoint.rstrip("/")
        self.url = self.base + BATCH_PATH
        self.llm = config.llm
        self._headers = {
            "authorization": f"Bearer {config.api_key}",
            "content-type": "application/json",
            "user-agent": f"spanmeter/{spanmeter.__version__}",
        }
        self._client = httpx.Client(timeout=config.timeout, follow_redirects=False)

    def event(self, record: UsageRecord) -> dict[str, Any] | str | None:
        """The tokens& event of a record; a str: why it cannot be one (a dead delivery); None:
        not for tokens& (skipped)."""
        if record.kind == "event":
            name, family, product = record.event_name or record.type, record.event_family, product_json(record.product)
        elif record.kind == "llm" and self.llm.send:
            product = product_json(record.product) or product_json(self.llm.product)
            name, family = self.llm.event_name, self.llm.event_family
        else:
            return None
        if not record.user_id and not record.email:
            return NO_DEVELOPER
        event = {
            "idempotencyKey": record.idempotency_key,
            "event_name": name,
            "event_family": family,
            "developer_id": record.user_id,
            "email": record.email,
            "product": product,
            "account_domain": record.account_domain,
            "source": record.source,
            "campaignId": record.campaign_id,
            "occurredAt": format_ns(record.occurred_at),
        }
        return {field: value for field, value in event.items() if value is not None}

    def _post(self, url: str, body: dict[str, Any]) -> httpx.Response | httpx.HTTPError:
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            return self._client.post(url, content=content, headers=self._headers)
        except httpx.HTTPError as error:
            return error

    def send(self, claim: Claim) -> Outcome:
        events: list[dict[str, Any]] = []
        sent: list[int] = []  # the claim index of each event sent
        dead: dict[int, str] = {}
        for index, record in enumerate(claim.records):
            event = self.event(record)
            if isinstance(event, str):
                dead[index] = event
            elif event is not None:
                events.append(event)
                sent.append(index)
        if events:
            answer = self._post(self.url, {"events": events})
            if isinstance(answer, httpx.HTTPError):
                return POLICY.unreachable(answer, self.url)
            outcome = POLICY.outcome(answer, self.url)
            if isinstance(outcome, Dead):  # the whole request refused: each sent record with that reason
                dead.update((index, outcome.reason) for index in sent)
            elif not isinstance(outcome, Delivered):
                return outcome  # the whole claim again later; the records refused above are settled then
            else:
                dead.update(self._refused(answer, sent))
        return Partial(len(claim.seqs), Delivered(), dead) if dead else Delivered()

    def _refused(self, response: httpx.Response, sent: list[int]) -> dict[int, str]:
        """The claim indexes of the events a 202 answer lists in `errors`, with tokens&'s reason."""
        if not response.content.strip():
            return {}
        try:
            errors = response.json().get("errors") or []
        except (ValueError, AttributeError):
            errors = None
        if not isinstance(errors, list):
            log.warning("exporter %s: HTTP %d from %s lists no refused events; taken as all accepted: %s",
                        self.name, response.status_code, self.url, response.text[:BODY_CHARS])
            return {}
        refused: dict[int, str] = {}
        for error in errors:
            index = error.get("index") if isinstance(error, dict) else None
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(sent):
                refused[sent[index]] = f"tokens& refused the event ({self.url}): {str(error.get('error'))[:BODY_CHARS]}"
        return refused

    def sample_event(self) -> dict[str, Any]:
        """The event `check` sends: an LLM call record's shape when those are sent, else a generic one."""
        sample = UsageRecord(
            idempotency_key=f"spanmeter-check-{uuid.uuid4()}",
            kind="llm" if self.llm.send else "event",
            type="SPANMETER_CHECK",
            occurred_at=time.time_ns(),
            user_id="spanmeter-check",
            event_name="SPANMETER_CHECK",
            event_family="evaluation",
            source="spanmeter",
        )
        event = self.event(sample)
        assert isinstance(event, dict)  # the sample has a developer and a kind that is sent
        return event

    def check(self) -> CheckResult:
        """One sample event to the dry-run endpoint (tokens& validates it and stores nothing)."""
        url = self.base + DRY_RUN_PATH
        answer = self._post(url, self.sample_event())
        if isinstance(answer, httpx.HTTPError):
            return CheckResult(False, POLICY.unreachable(answer, url).reason)
        outcome = POLICY.outcome(answer, url)
        if not isinstance(outcome, Delivered):
            return CheckResult(False, outcome.reason)
        try:
            valid = answer.json().get("valid") is True
        except (ValueError, AttributeError):
            valid = False
        return CheckResult(valid, f"HTTP {answer.status_code} from {url}: {answer.text[:2000]}")

    def close(self) -> None:
        self._client.close()


def create(name: str, config: TokensandConfig) -> TokensandExporter:
    return TokensandExporter(name, config)


TYPE: Final = register("tokensand", TokensandConfig, create)
