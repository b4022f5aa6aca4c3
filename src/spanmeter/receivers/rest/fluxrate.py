"""Fluxrate-compatible metering: `POST /api/v1/sdk/track` (key in `X-API-Key`).

A meter event becomes a `meter` record: `meter_token` → meter (and type), `customer_external_id`
→ customer_id, `quantity` (an exact number > 0, integer or decimal), `timestamp` (ISO-8601;
default now), `idempotency_key` (a repeat is silently de-duplicated: no double charge; without
one every request is a new record), `metadata` → filterable `meta` (strings, numbers, booleans).

Answers: 202 `{"ok": true, "duplicate": bool}`; 400 naming the field (`quantity must be > 0`,
`meter_token: Field required`, ...); other errors `{"ok": false, "error": <message>}`.
"""

from __future__ import annotations

from typing import Final, Literal

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr

from spanmeter.convert.events import new_meter_record
from spanmeter.convert.values import InvalidSpan
from spanmeter.receivers.rest import fields as F
from spanmeter.receivers.rest.body import RestError
from spanmeter.receivers.rest.endpoint import Answer, RestIngest, json_route
from spanmeter.receivers.rest.openapi import body_of, route_args
from spanmeter.record import UsageRecord
from spanmeter.usage_schema import meter_quantity


class FluxrateTrack(F.Body):
    """One billable meter event."""

    meter_token: StrictStr = Field(description="the token (UUID) identifying the meter")
    customer_external_id: StrictStr = Field(description="your own customer id")
    quantity: F.Number = Field(json_schema_extra={"exclusiveMinimum": 0}, description="> 0; integer or decimal")
    timestamp: StrictStr | None = Field(None, description="ISO-8601 (UTC when no offset); default: now")
    idempotency_key: StrictStr | None = Field(None, description="e.g. order_{id}; a repeat is stored once")
    metadata: F.Metadata | None = Field(None, description="extra key-value data; filterable as meta[key]")


class FluxrateTracked(F.Body):
    ok: Literal[True] = True
    duplicate: bool = Field(description="true when this idempotency_key was stored before")


def meter_event_record(api: RestIngest, event: FluxrateTrack) -> UsageRecord:
    limit = api.limit
    try:
        meter = F.required("meter_token", event.meter_token, limit)
        return new_meter_record(
            F.idempotency_key("idempotency_key", event.idempotency_key) or F.fresh_key("fluxrate"),
            F.timestamp("timestamp", event.timestamp) or api.clock(),
            api.common(customer_id=F.required("customer_external_id", event.customer_external_id, limit)),
            meter=meter,
            quantity=meter_quantity("quantity", event.quantity, InvalidSpan),
            meta=F.metadata("metadata", event.metadata, limit, api.max_meta_keys),
        )
    except InvalidSpan as error:
        raise RestError(400, str(error)) from None


def create_router(api: RestIngest) -> APIRouter:
    router = APIRouter(tags=["Fluxrate compatible ingest"])

    async def track(request: Request) -> Answer:
        """Store one meter event."""
        await api.check_quota(request)
        record = meter_event_record(api, F.validated(FluxrateTrack, await api.body(request)))
        result = await api.write_one(record)
        return 202, {"ok": True, "duplicate": not result.inserted}

    router.add_api_route(
        "/api/v1/sdk/track", json_route(track), methods=["POST"], summary="Track one meter event (Fluxrate)",
        **route_args(202, FluxrateTracked, body_of(FluxrateTrack), quota=True),
    )  # fmt: skip
    return router


REQUEST_MODELS: Final = (FluxrateTrack,)
