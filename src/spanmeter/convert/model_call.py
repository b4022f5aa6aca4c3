"""The `llm` record of one model call, from the values a receiver read (spans.py through the full
name table, fast_path.py in one pass, the REST ingest from a JSON body): what makes the record
from them is here once — the token contract, latency, status and error, the provider's
genai-prices name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.pricing import normalise_provider
from spanmeter.record import UsageRecord


def model_call_record(
    span: Span | None,
    operation: str,
    common: dict[str, Any],
    *,
    provider: str | None,
    request_model: str | None,
    response_model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    total_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    exclusive_input: bool,
    error_type: str | None,
    meta: dict[str, str],
    reported_cost_usd: Decimal | None = None,
    query: str | None = None,
    occurred_at: int = 0,
    latency_ms: int | None = None,
    failed: bool = False,
) -> UsageRecord:
    """The record without its idempotency key and received_at (the caller sets both).

    A span gives the time, latency and outcome; a receiver without one (the REST ingest) passes
    `span=None` and `occurred_at`, `latency_ms`, `failed` instead. One function, not a span
    wrapper around a plain one: a second call costs ~2 µs of a span's conversion."""
    input_tokens, output_tokens, total_tokens = settle_counts(
        input_tokens, output_tokens, total_tokens, cache_read, cache_write, reasoning,
        operation=operation, exclusive_input=exclusive_input,
    )  # fmt: skip
    error = failed
    if span is not None:
        occurred_at, end = span.start_time_unix_nano, span.end_time_unix_nano
        latency_ms = (end - occurred_at) // 1_000_000 if end >= occurred_at else None
        error = span.status.code == Status.STATUS_CODE_ERROR
        if error and error_type is None and span.status.message:
            error_type = span.status.message[:200]
    if error and response_model is not None and request_model in (None, response_model):
        # A failed call had no answer: emitters that name one model (Langfuse) or copy the request
        # model (Logfire) put the requested one where the answering one goes. The record says so:
        # request model set, response model empty.
        request_model, response_model = response_model, None
    return UsageRecord(
        "",
        "llm",
        operation,
        occurred_at,
        latency_ms=latency_ms,
        provider=normalise_provider(provider),
        request_model=request_model,
        response_model=response_model,
        operation=operation,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        reported_cost_usd=reported_cost_usd,
        status="error" if error else "success",
        error_type=error_type,
        meta=meta,
        query=query,
        **common,
    )


def settle_counts(
    input_tokens: int | None,
    output_tokens: int | None,
    total_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    *,
    operation: str,
    exclusive_input: bool,
) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) as records count them: the GenAI conventions' inclusive counts (input
    includes cache reads and writes, output includes reasoning; README.md, "One token contract").

    Input excludes the cache tokens when the source is known to pass exclusive counts through
    (`exclusive_input`), or when the parts are larger than the whole, which inclusive counts can
    never be; likewise output and reasoning tokens. A reported total made of exclusive counts is
    dropped; a missing total is input + output (input alone for embeddings, which have no output).
    """
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and cached and (exclusive_input or cached > input_tokens):
        input_tokens += cached
        total_tokens = None
    if output_tokens is not None and reasoning and reasoning > output_tokens:
        output_tokens += reasoning
        total_tokens = None
    if total_tokens is None and input_tokens is not None:
        if output_tokens is not None:
            total_tokens = input_tokens + output_tokens
        elif operation == "embeddings":
            total_tokens = input_tokens
    return input_tokens, output_tokens, total_tokens
