"""LLMtrack-compatible ingest: `POST /api/ingest`, one LLM call per request.

The call becomes an `llm` record priced exactly as an OTLP span of the same call: `provider`,
`model` (the request model), `prompt_tokens` / `completion_tokens` / `total_tokens` (null when
unavailable; a missing total is their sum), `latency_ms`, `status` (default `success`; any other
value is a failed call, and a value other than `error` is kept as its error type),
`metadata.feature` (default `unknown`). `cost` is kept as the reported cost beside the computed
one. `metadata.customer_id`, `user_id` and `conversation_id` name who the call is billed to; other
metadata entries become filterable `meta`. An `Idempotency-Key` header makes a retry safe;
without it every request is a new record.

Answers, with the service's exact messages: 201 `{"ok": true, "consumption_source": "included"}`;
400 `Invalid payload` (and `details` naming the field); 401 `Missing API key`, `Invalid API key`,
`Revoked API key`, `Inactive API key`; 402 when the key's monthly quota is used up; 500
`Internal server error`. Error bodies are `{"ok": false, "error": <message>}`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field, StrictStr

from spanmeter.convert.model_call import model_call_record
from spanmeter.convert.values import MAX_COST_USD, InvalidSpan, as_count, as_decimal
from spanmeter.receivers.rest import fields as F
from spanmeter.receivers.rest.body import RestError
from spanmeter.receivers.rest.endpoint import Answer, RestIngest, json_route
from spanmeter.receivers.rest.openapi import body_of, route_args
from spanmeter.record import UsageRecord

INVALID_PAYLOAD: Final = "Invalid payload"
DEFAULT_FEATURE: Final = "unknown"
_WHO: Final = ("customer_id", "user_id", "conversation_id")
Count = int | None


class LlmtrackMetadata(F.Body):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    feature: StrictStr | None = Field(None, description="the feature or function name; default unknown")
    customer_id: StrictStr | None = Field(None, description="who the call is billed to (spanmeter's addition)")
    user_id: StrictStr | None = None
    conversation_id: StrictStr | None = None


class LlmtrackEvent(F.Body):
    """One LLM call."""

    provider: StrictStr = Field(description="e.g. openai")
    model: StrictStr = Field(description="e.g. gpt-4o-mini")
    prompt_tokens: Count = Field(None, strict=True, ge=0)
    completion_tokens: Count = Field(None, strict=True, ge=0)
    total_tokens: Count = Field(None, strict=True, ge=0, description="default: prompt + completion")
    cost: F.Number | None = Field(None, description="the client's cost in USD, kept as the reported cost")
    latency_ms: Count = Field(None, strict=True, ge=0)
    status: StrictStr = Field("success", description="success, or the kind of failure")
    metadata: LlmtrackMetadata | None = Field(None, description="other entries become filterable meta")


class Ingested(F.Body):
    ok: Literal[True] = True
    consumption_source: Literal["included"] = "included"


class LlmtrackError(F.Body):
    ok: Literal[False] = False
    error: str = Field(description="the service's message: Invalid payload, Missing API key, ...")
    details: str | None = Field(None, description="for 400: the field and what is wrong with it")


def error_body(status: int, message: str) -> dict[str, Any]:
    if status == 400:
        return {"ok": False, "error": INVALID_PAYLOAD, "details": message}
    return {"ok": False, "error": message}


def llm_call_record(api: RestIngest, event: LlmtrackEvent, key: str) -> UsageRecord:
    limit = api.limit
    meta = event.metadata or LlmtrackMetadata()
    extra = dict(meta.model_extra or {})
    status = F.required("status", event.status, limit).lower()
    common = api.common(
        feature=F.text("metadata.feature", meta.feature, limit) or DEFAULT_FEATURE,
        **{name: F.text(f"metadata.{name}", getattr(meta, name), limit) for name in _WHO},
    )
    counts = {
        name: None if value is None else as_count(name, value)
        for name, value in (
            ("prompt_tokens", event.prompt_tokens),
            ("completion_tokens", event.completion_tokens),
            ("total_tokens", event.total_tokens),
        )
    }
    record = model_call_record(
        None,
        "chat",
        common,
        occurred_at=api.clock(),
        latency_ms=None if event.latency_ms is None else as_count("latency_ms", event.latency_ms),
        failed=status != "success",
        provider=F.required("provider", event.provider, limit),
        request_model=F.required("model", event.model, limit),
        response_model=None,
        input_tokens=counts["prompt_tokens"],
        output_tokens=counts["completion_tokens"],
        total_tokens=counts["total_tokens"],
        cache_read=None,
        cache_write=None,
        reasoning=None,
        exclusive_input=False,
        error_type=None if status in ("success", "error") else status,
        meta=F.metadata("metadata", extra, limit, api.max_meta_keys),
        reported_cost_usd=None if event.cost is None else as_decimal("cost", event.cost, limit=MAX_COST_USD, positive=False),
    )
    record.idempotency_key = key
    return record


def create_router(api: RestIngest) -> APIRouter:
    router = APIRouter(tags=["LLMtrack compatible ingest"])

    async def ingest(request: Request) -> Answer:
        """Store one LLM call."""
        await api.check_quota(request)
        event = F.validated(LlmtrackEvent, await api.body(request))
        header = request.headers.get("idempotency-key")
        try:
            key = F.idempotency_key("Idempotency-Key header", header) or F.fresh_key("llmtrack")
            record = llm_call_record(api, event, key)
        except InvalidSpan as error:
            raise RestError(400, str(error)) from None
        await api.write_one(record)
        return 201, {"ok": True, "consumption_source": "included"}

    router.add_api_route(
        "/api/ingest", json_route(ingest, error_body), methods=["POST"], summary="Ingest one LLM call (LLMtrack)",
        **route_args(201, Ingested, body_of(LlmtrackEvent), invalid=LlmtrackError, quota=True, errors=LlmtrackError),
    )  # fmt: skip
    return router


REQUEST_MODELS: Final = (LlmtrackEvent,)
