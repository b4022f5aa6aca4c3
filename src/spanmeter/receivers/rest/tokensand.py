"""tokens&-compatible usage tracking: `POST /api/usage/track`, `/track/dry-run`, `/track/batch`.

An event (a product or adoption event: `FIRST_API_CALL`, `SDK_INIT`, ...) becomes an `event`
record: `event_name` → type, `developer_id` → user_id, `email`, `event_family` (one of intent,
evaluation, activation, retention, expansion, commercial), `product`, `account_domain` (lower
case, no `www.`, international names in punycode), `source`, `campaignId`, `occurredAt` (default:
now), `idempotencyKey` (a retry with the same key is stored once; without one every event is new).
A Segment/PostHog-style `{"type": "track", "event", "userId", "properties", "context"}` payload is
the same event (its `messageId` and `timestamp` are the key and the time).

Answers: track → 202 `{"ok": true, "id", "duplicate"}`; dry-run → 200 `{"ok": true, "valid": true,
"event": <normalised>}` or 400 `{"ok": false, "errors": [...]}` and stores nothing; batch
(`{"events": [...]}` or a bare array, at most 500) → 202 `{"ok": true, "accepted", "duplicates",
"errors": [{"index", "error"}]}` with every valid event stored; other errors `{"ok": false, "error"}`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr, model_validator
from pydantic.json_schema import WithJsonSchema

from spanmeter.convert.events import new_event_record
from spanmeter.convert.values import InvalidSpan
from spanmeter.receivers.rest import fields as F
from spanmeter.receivers.rest.body import RestError
from spanmeter.receivers.rest.endpoint import Answer, RestIngest, json_route, refused_message
from spanmeter.receivers.rest.openapi import body_of, route_args
from spanmeter.record import Product, UsageRecord, format_ns
from spanmeter.usage_schema import EVENT_FAMILIES, event_family

MAX_BATCH: Final = 500
# One of the six lifecycle stages (any letter case): checked by convert/events.event_family.
Family = Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": list(EVENT_FAMILIES)})]


class TokensandProduct(F.Body):
    id: StrictStr | None = None
    name: StrictStr | None = None
    type: StrictStr | None = Field(None, description="API, model, SDK, workflow, agent, event or docs")
    version: StrictStr | None = None
    category: StrictStr | None = None


class TokensandEvent(F.Body):
    """One tokens& usage event."""

    event_name: StrictStr = Field(description="e.g. FIRST_API_CALL")
    developer_id: StrictStr | None = Field(None, description="the person; this and/or email is required")
    email: StrictStr | None = None
    event_family: Family | None = Field(None, description="lifecycle stage (any letter case)")
    product: TokensandProduct | None = None
    account_domain: StrictStr | None = Field(None, description="e.g. company.com; normalised")
    source: StrictStr | None = Field(None, description="e.g. SDK, docs")
    campaignId: StrictStr | None = None
    occurredAt: StrictStr | None = Field(None, description="ISO-8601 (UTC when no offset); default: now")
    idempotencyKey: StrictStr | None = Field(None, description="a retry with the same key is stored once")

    @model_validator(mode="after")
    def _someone(self) -> TokensandEvent:
        if not self.developer_id and not self.email:
            raise ValueError("developer_id or email is required")
        return self


class SegmentProperties(F.Body):
    event_family: Family | None = Field(None, description="lifecycle stage (any letter case)")
    account_domain: StrictStr | None = None
    product_id: StrictStr | None = None
    product_name: StrictStr | None = None
    campaignId: StrictStr | None = None
    source: StrictStr | None = None
    idempotencyKey: StrictStr | None = None


class SegmentTraits(F.Body):
    email: StrictStr | None = None


class SegmentContext(F.Body):
    traits: SegmentTraits | None = None


class SegmentTrack(F.Body):
    """A Segment/PostHog-style `track` call, accepted as the same event."""

    type: Literal["track"]
    event: StrictStr = Field(description="the event name")
    userId: StrictStr | None = Field(None, description="the developer; this and/or context.traits.email is required")
    properties: SegmentProperties | None = None
    context: SegmentContext | None = None
    messageId: StrictStr | None = Field(None, description="the idempotency key (properties.idempotencyKey wins)")
    timestamp: StrictStr | None = Field(None, description="ISO-8601; default: now")

    @model_validator(mode="after")
    def _someone(self) -> SegmentTrack:
        if not self.userId and not (self.context and self.context.traits and self.context.traits.email):
            raise ValueError("userId or context.traits.email is required")
        return self

    def as_event(self) -> TokensandEvent:
        p = self.properties or SegmentProperties()
        email = self.context.traits.email if self.context and self.context.traits else None
        product = TokensandProduct(id=p.product_id, name=p.product_name) if p.product_id or p.product_name else None
        return TokensandEvent(
            event_name=self.event,
            developer_id=self.userId,
            email=email,
            event_family=p.event_family,
            product=product,
            account_domain=p.account_domain,
            source=p.source,
            campaignId=p.campaignId,
            occurredAt=self.timestamp,
            idempotencyKey=p.idempotencyKey or self.messageId,
        )


class TokensandBatch(F.Body):
    """Up to 500 events; a bare JSON array of events is accepted too."""

    events: list[TokensandEvent | SegmentTrack] = Field(max_length=MAX_BATCH)


class TrackAccepted(F.Body):
    ok: Literal[True] = True
    id: str | None = Field(description="the stored record's id (the first one's, for a duplicate)")
    duplicate: bool


class DryRunValid(F.Body):
    ok: Literal[True] = True
    valid: Literal[True] = True
    event: dict[str, Any] = Field(description="the event as it would be stored: normalised, defaults filled in")


class DryRunInvalid(F.Body):
    ok: Literal[False] = False
    errors: list[str]


class BatchError(F.Body):
    index: int
    error: str


class BatchAccepted(F.Body):
    ok: Literal[True] = True
    accepted: int = Field(description="events stored now")
    duplicates: int = Field(description="events whose idempotencyKey was stored before (or earlier in the batch)")
    errors: list[BatchError] = Field(description="invalid events, by index; nothing of them was stored")


def parse_event(data: Any, where: str = "") -> TokensandEvent:
    if isinstance(data, dict) and "type" in data:
        if data["type"] != "track":
            raise RestError(400, f"{where + '.' if where else ''}type: only 'track' calls are accepted")
        return F.validated(SegmentTrack, data, where).as_event()
    return F.validated(TokensandEvent, data, where)


def event_record(api: RestIngest, event: TokensandEvent, where: str = "") -> UsageRecord:
    """The `event` record of a tokens& event; InvalidSpan names the field (prefixed with `where`)."""
    limit = api.limit
    prefix = f"{where}." if where else ""
    try:
        product = None
        if event.product is not None:
            p = event.product
            values = [F.text(f"{prefix}product.{n}", getattr(p, n), limit) for n in ("id", "name", "type", "version", "category")]
            product = Product(*values) if any(values) else None
        common = api.common(
            user_id=F.text(f"{prefix}developer_id", event.developer_id, limit),
            email=F.text(f"{prefix}email", event.email, limit),
            account_domain=F.account_domain(f"{prefix}account_domain", event.account_domain, limit),
        )
        key = F.idempotency_key(f"{prefix}idempotencyKey", event.idempotencyKey) or F.fresh_key("tokensand")
        family = F.text(f"{prefix}event_family", event.event_family, limit)
        return new_event_record(
            key,
            F.timestamp(f"{prefix}occurredAt", event.occurredAt) or api.clock(),
            common,
            name=F.required(f"{prefix}event_name", event.event_name, limit),
            family=None if family is None else event_family(f"{prefix}event_family", family, InvalidSpan),
            product=product,
            source=F.text(f"{prefix}source", event.source, limit),
            campaign_id=F.text(f"{prefix}campaignId", event.campaignId, limit),
        )
    except InvalidSpan as error:
        raise RestError(400, str(error)) from None


def normalised(record: UsageRecord, keyed: bool) -> dict[str, Any]:
    """The event as tokens& names its fields, from the record that would be stored."""
    out: dict[str, Any] = {
        "event_name": record.event_name,
        "developer_id": record.user_id,
        "email": record.email,
        "event_family": record.event_family,
        "product": None,
        "account_domain": record.account_domain,
        "source": record.source,
        "campaignId": record.campaign_id,
        "occurredAt": format_ns(record.occurred_at),
        "idempotencyKey": record.idempotency_key if keyed else None,
    }
    if record.product is not None:
        p = record.product
        product = {"id": p.id, "name": p.name, "type": p.type, "version": p.version, "category": p.category}
        out["product"] = {name: value for name, value in product.items() if value is not None}
    return {name: value for name, value in out.items() if value is not None}


def create_router(api: RestIngest) -> APIRouter:
    router = APIRouter(prefix="/api/usage", tags=["tokens& compatible ingest"])

    async def track(request: Request) -> Answer:
        """Store one event."""
        await api.check_quota(request)
        record = event_record(api, parse_event(await api.body(request)))
        result = await api.write_one(record)
        record_id, duplicate = await api.stored_id(record, result)
        return 202, {"ok": True, "id": record_id, "duplicate": duplicate}

    async def dry_run(request: Request) -> Answer:
        """Validate and normalise one event; nothing is stored."""
        try:
            event = parse_event(await api.body(request))
            record = event_record(api, event)
        except RestError as error:
            if error.status != 400:
                raise
            return 400, {"ok": False, "errors": error.problems}
        return 200, {"ok": True, "valid": True, "event": normalised(record, event.idempotencyKey is not None)}

    async def batch(request: Request) -> Answer:
        """Store up to 500 events; invalid ones are reported by index, the valid ones stored."""
        await api.check_quota(request)
        data = await api.body(request)
        events = data.get("events") if isinstance(data, dict) else data
        if not isinstance(events, list):
            raise RestError(400, 'events: expected {"events": [...]} or a JSON array of events')
        if len(events) > MAX_BATCH:
            raise RestError(400, f"events: at most {MAX_BATCH} events per batch; got {len(events)}")
        records: list[UsageRecord] = []
        indexes: list[int] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(events):
            try:
                records.append(event_record(api, parse_event(item, f"events[{index}]"), f"events[{index}]"))
                indexes.append(index)
            except RestError as error:
                errors.append({"index": index, "error": error.message})
        result = await api.write(records)
        if result.refused:  # valid events the store could not hold: errors too, never accepted
            at = {id(record): index for record, index in zip(records, indexes, strict=True)}
            errors += [{"index": at[id(record)], "error": refused_message(record, why)} for record, why in result.refused]
            errors.sort(key=lambda error: error["index"])
        return 202, {"ok": True, "accepted": len(result.inserted), "duplicates": result.duplicates, "errors": errors}

    event_body = body_of(TokensandEvent, SegmentTrack)
    router.add_api_route(
        "/track", json_route(track), methods=["POST"], summary="Track one event (tokens&)",
        **route_args(202, TrackAccepted, event_body, quota=True),
    )  # fmt: skip
    router.add_api_route(
        "/track/dry-run", json_route(dry_run), methods=["POST"], summary="Validate one event (tokens&)",
        **route_args(200, DryRunValid, event_body, invalid=DryRunInvalid),
    )  # fmt: skip
    router.add_api_route(
        "/track/batch", json_route(batch), methods=["POST"], summary="Track up to 500 events (tokens&)",
        **route_args(202, BatchAccepted, body_of(TokensandBatch, array_of=(TokensandEvent, SegmentTrack)), quota=True),
    )  # fmt: skip
    return router


REQUEST_MODELS: Final = (TokensandEvent, SegmentTrack, TokensandBatch)
