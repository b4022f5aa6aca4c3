"""Spryngtime-compatible trackUsage: `POST /api/usage-tracking/track-usage` (key as Bearer).

One request is one message: an `llm` record stored under the customer `key`, with
`conversationId`, `tags` (filterable) and `query` (kept only when content capture is on,
truncated to its length). Tokens come from `usage` (`prompt_tokens`, `completion_tokens`,
`total_tokens`) or are read from `openAiResponse` — a raw OpenAI Chat Completions, Responses or
embeddings response — with genai-prices' own extractor, which also gives the model (provider
`openai`); `usage` wins where both are given and disagree. The response's `id` is the message id
and its `created` time the record's time. An `Idempotency-Key` header makes a retry safe;
without it every request is a new message.

Answers: 200 `{"ok": true, "id", "duplicate"}`; 400 naming the field; other errors
`{"ok": false, "error": <message>}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import genai_prices
from fastapi import APIRouter, Request
from pydantic import Field, StrictStr, model_validator

from spanmeter.convert.model_call import model_call_record
from spanmeter.convert.values import InvalidSpan, as_count
from spanmeter.receivers.rest import fields as F
from spanmeter.receivers.rest.body import RestError
from spanmeter.receivers.rest.endpoint import Answer, RestIngest, json_route
from spanmeter.receivers.rest.openapi import body_of, route_args
from spanmeter.record import UsageRecord

PROVIDER: Final = "openai"
_FLAVORS: Final = {"chat.completion": "chat", "text_completion": "chat", "response": "responses", "list": "embeddings"}
_DAY_NS: Final = 86_400 * 1_000_000_000


class SpryngtimeUsage(F.Body):
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    total_tokens: int | None = Field(None, ge=0)


class SpryngtimeTrackUsage(F.Body):
    """One message: the usage of one LLM call of a customer."""

    key: StrictStr = Field(description="the customer the usage is stored under")
    query: StrictStr | None = Field(None, description="the query sent to the LLM; stored only with content capture on")
    tags: list[StrictStr] | None = Field(None, description="for search and filters")
    conversationId: StrictStr | None = None
    openAiResponse: dict[str, Any] | None = Field(
        None, description="the raw OpenAI chat completion, response or embeddings response"
    )
    usage: SpryngtimeUsage | None = Field(None, description="token counts, when not sending openAiResponse")

    @model_validator(mode="after")
    def _usage(self) -> SpryngtimeTrackUsage:
        if self.usage is None and self.openAiResponse is None:
            raise ValueError("usage or openAiResponse is required")
        return self


class SpryngtimeTracked(F.Body):
    ok: Literal[True] = True
    id: str | None = Field(description="the stored record's id (the first one's, for a duplicate)")
    duplicate: bool


@dataclass(slots=True)
class OpenAICall:
    """What an OpenAI response says about its call."""

    operation: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read: int | None
    reasoning: int | None
    response_id: str | None
    created_ns: int | None


def read_openai_response(response: dict[str, Any]) -> OpenAICall:
    """Usage and model of a raw OpenAI response, read with `genai_prices.extract_usage`."""
    usage = response.get("usage")
    flavor = _FLAVORS.get(str(response.get("object")))
    if flavor is None and isinstance(usage, dict):  # no `object`: tell the shape by its usage
        flavor = "responses" if "input_tokens" in usage else "chat" if "completion_tokens" in usage else "embeddings"
    try:
        try:
            extracted = genai_prices.extract_usage(response, provider_id=PROVIDER, api_flavor=flavor or "chat")
        except LookupError:  # a model genai-prices does not know: its usage still counts
            model_less = {name: value for name, value in response.items() if name != "model"}
            extracted = genai_prices.extract_usage(model_less, provider_id=PROVIDER, api_flavor=flavor or "chat")
    except ValueError as error:
        raise InvalidSpan(f"openAiResponse: {error}") from None
    counts = extracted.usage

    def count(name: str, value: Any, part: bool = False) -> int | None:
        number = as_count(f"openAiResponse.usage.{name}", value)
        return None if part and not number else number

    model = response.get("model")
    embeddings = flavor == "embeddings"
    created = response.get("created", response.get("created_at"))
    response_id = response.get("id")
    return OpenAICall(
        operation="embeddings" if embeddings else "chat",
        model=model if isinstance(model, str) and model else None,
        input_tokens=count("input_tokens", counts.input_tokens),
        output_tokens=None if embeddings else count("output_tokens", counts.output_tokens),
        total_tokens=None,  # input + output, as for every record without a total
        cache_read=count("cache_read_tokens", counts.cache_read_tokens, part=True),
        reasoning=count("output_reasoning_tokens", counts.output_reasoning_tokens, part=True),
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        created_ns=created * 1_000_000_000 if type(created) is int and created > 0 else None,
    )


def message_record(api: RestIngest, body: SpryngtimeTrackUsage, key: str) -> UsageRecord:
    limit = api.limit
    options = api.ingest.options
    now = api.clock()
    call = read_openai_response(body.openAiResponse) if body.openAiResponse is not None else None
    input_tokens = output_tokens = total_tokens = cache_read = reasoning = None
    if call is not None:
        input_tokens, output_tokens, total_tokens = call.input_tokens, call.output_tokens, call.total_tokens
        cache_read, reasoning = call.cache_read, call.reasoning
    if body.usage is not None:
        given = body.usage
        if (given.prompt_tokens, given.completion_tokens) != (input_tokens, output_tokens):
            cache_read = reasoning = None  # parts of other counts than the ones stored
        input_tokens, output_tokens, total_tokens = given.prompt_tokens, given.completion_tokens, given.total_tokens
    occurred = call.created_ns if call is not None and call.created_ns and call.created_ns <= now + _DAY_NS else now
    common = api.common(
        customer_id=F.required("key", body.key, limit),
        conversation_id=F.text("conversationId", body.conversationId, limit),
        message_id=F.text("openAiResponse.id", call.response_id, limit) if call is not None else None,
    )
    query = body.query[: options.content_max_chars] or None if options.content_capture and body.query else None
    record = model_call_record(
        None,
        call.operation if call is not None else "chat",
        common,
        occurred_at=occurred,
        provider=PROVIDER if call is not None else None,
        request_model=None,
        response_model=F.text("openAiResponse.model", call.model, limit) if call is not None else None,
        input_tokens=None if input_tokens is None else as_count("usage.prompt_tokens", input_tokens),
        output_tokens=None if output_tokens is None else as_count("usage.completion_tokens", output_tokens),
        total_tokens=None if total_tokens is None else as_count("usage.total_tokens", total_tokens),
        cache_read=cache_read,
        cache_write=None,
        reasoning=reasoning,
        exclusive_input=False,
        error_type=None,
        meta={},
        query=query,
    )
    record.tags = F.tags("tags", body.tags, limit)
    record.idempotency_key = key
    return record


def create_router(api: RestIngest) -> APIRouter:
    router = APIRouter(tags=["Spryngtime compatible ingest"])

    async def track_usage(request: Request) -> Answer:
        """Store one message's usage."""
        await api.check_quota(request)
        body = F.validated(SpryngtimeTrackUsage, await api.body(request))
        try:
            key = F.idempotency_key("Idempotency-Key header", request.headers.get("idempotency-key"))
            record = message_record(api, body, key or F.fresh_key("spryngtime"))
        except InvalidSpan as error:
            raise RestError(400, str(error)) from None
        result = await api.write_one(record)
        record_id, duplicate = await api.stored_id(record, result)
        return 200, {"ok": True, "id": record_id, "duplicate": duplicate}

    router.add_api_route(
        "/api/usage-tracking/track-usage", json_route(track_usage), methods=["POST"],
        summary="Track one message's usage (Spryngtime trackUsage)",
        **route_args(200, SpryngtimeTracked, body_of(SpryngtimeTrackUsage), quota=True),
    )  # fmt: skip
    return router


REQUEST_MODELS: Final = (SpryngtimeTrackUsage,)
