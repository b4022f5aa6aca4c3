"""Spans → usage records.

`convert_traces` walks an ExportTraceServiceRequest and returns the records it yields plus the
spans it had to reject (with reasons, for OTLP partial success). A span yields:
- an `llm` record when it describes one model call (see `model_operation`),
- an `event` record when it carries `usage.event.name`,
- a `meter` record when it carries `usage.meter` and `usage.quantity`,
- one `event` record per span event that carries `usage.event.name`.
Spans that are none of these (HTTP, DB, agent/chain wrappers) are accepted and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert import attributes as A
from spanmeter.convert.content import prompt_text
from spanmeter.convert.events import event_record, meter_record, read_meta
from spanmeter.convert.idempotency import llm_key, secondary_key, span_event_key, span_key
from spanmeter.convert.values import (
    MAX_COST_USD,
    Attrs,
    InvalidSpan,
    as_decimal,
    attributes,
    first,
    get_count,
    get_str,
    hex_id,
)
from spanmeter.pricing import normalise_provider
from spanmeter.record import UsageRecord

MAX_ERRORS_REPORTED: Final = 5


@dataclass(slots=True, frozen=True)
class ConvertOptions:
    workspace: str = "default"
    # gen_ai.operation.name / llm.request.type values counted as model calls; agent, workflow and
    # tool operations are left out by default because they repeat their children's token totals.
    count_operations: frozenset[str] = A.MODEL_OPERATIONS
    max_field_chars: int = 4096
    content_capture: bool = False
    content_max_chars: int = 2000
    # Instrumentation scopes known to pass through exclusive input counts (Anthropic's API style).
    exclusive_input_scopes: frozenset[str] = frozenset()


@dataclass(slots=True)
class Converted:
    records: list[UsageRecord] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, where: str, error: InvalidSpan) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append(f"{where}: {error}")

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.errors)
        return "; ".join(self.errors) + (f"; and {more} more" if more > 0 else "")


def convert_traces(request: ExportTraceServiceRequest, options: ConvertOptions, received_at: int) -> Converted:
    out = Converted()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                try:
                    out.records.extend(convert_span(span, resource, options, received_at, scope))
                except InvalidSpan as error:
                    out.reject(f"span {span.span_id.hex() or '(no id)'} {span.name[:80]!r}", error)
    return out


def convert_span(
    span: Span, resource: Attrs, options: ConvertOptions, received_at: int, scope: str = ""
) -> list[UsageRecord]:
    attrs = attributes(span.attributes)
    operation = model_operation(attrs, options)
    has_event = A.EVENT_NAME in attrs
    has_meter = A.METER in attrs or A.QUANTITY in attrs
    usage_events = [e for e in span.events if any(kv.key == A.EVENT_NAME for kv in e.attributes)]
    if operation is None and not has_event and not has_meter and not usage_events:
        return []

    layers = (attrs, resource)
    common = _common_fields(span, layers, options)
    explicit_key = get_str((attrs,), (A.IDEMPOTENCY_KEY,), options.max_field_chars)
    base_key = explicit_key or span_key(common["trace_id"], common["span_id"])
    records: list[UsageRecord] = []

    if operation is not None:
        record = _llm_record(span, attrs, layers, operation, common, options, scope in options.exclusive_input_scopes)
        if explicit_key is None and (response_id := get_str((attrs,), A.RESPONSE_ID, options.max_field_chars)):
            record.idempotency_key = llm_key(record.provider, response_id)
        else:
            record.idempotency_key = base_key
        records.append(record)
    if has_event:
        records.append(event_record(layers, common, base_key, span.start_time_unix_nano, options.max_field_chars))
    if has_meter:
        records.append(meter_record(layers, common, base_key, span.start_time_unix_nano, options.max_field_chars))
    # The first record of the span keeps the base key; a second kind gets a suffix.
    for record in records[1:]:
        if record.idempotency_key == base_key:
            record.idempotency_key = secondary_key(base_key, record.kind)

    for index, event in enumerate(span.events):
        event_attrs = attributes(event.attributes)
        if A.EVENT_NAME not in event_attrs:
            continue
        event_layers = (event_attrs, attrs, resource)
        key = get_str((event_attrs,), (A.IDEMPOTENCY_KEY,), options.max_field_chars) or span_event_key(
            base_key, index
        )
        occurred = event.time_unix_nano or span.start_time_unix_nano
        records.append(event_record(event_layers, common, key, occurred, options.max_field_chars))

    for record in records:
        record.received_at = received_at
    return records


def model_operation(attrs: Attrs, options: ConvertOptions) -> str | None:
    """The record type if this span is one model call that counts, else None."""
    found = first((attrs,), A.OPERATION)
    if found is not None:
        operation = str(found[1]).lower()
        if operation not in options.count_operations:
            return None
        return A.OPERATION_TYPES.get(operation, operation)
    oi_kind = attrs.get(A.OPENINFERENCE_SPAN_KIND)
    if oi_kind is not None:
        if str(oi_kind).upper() not in A.OPENINFERENCE_MODEL_KINDS:
            return None
        return "embeddings" if str(oi_kind).upper() == "EMBEDDING" else "chat"
    if A.TRACELOOP_SPAN_KIND in attrs:
        return None
    # Older emitters: a provider name plus token counts is a model call.
    if first((attrs,), A.PROVIDER) is not None and first((attrs,), A.INPUT_TOKENS + A.OUTPUT_TOKENS) is not None:
        return "chat"
    return None


def _common_fields(span: Span, layers: Sequence[Attrs], options: ConvertOptions) -> dict[str, Any]:
    """Fields every record of a span shares: links, who, relations."""
    if span.start_time_unix_nano <= 0:
        raise InvalidSpan("start_time_unix_nano is required")
    return common_fields(
        layers, options, trace_id=hex_id(span.trace_id, 16, "trace_id"), span_id=hex_id(span.span_id, 8, "span_id")
    )


def common_fields(
    layers: Sequence[Attrs], options: ConvertOptions, *, trace_id: str | None, span_id: str | None
) -> dict[str, Any]:
    """Links, who and relations of a record; `layers` = (own attributes, ..., resource attributes)."""
    limit = options.max_field_chars
    common: dict[str, Any] = {
        "workspace": options.workspace,
        "trace_id": trace_id,
        "span_id": span_id,
        "service_name": get_str(layers[-1:], (A.SERVICE_NAME,), limit),
        "customer_id": get_str(layers, A.CUSTOMER_ID, limit),
        "user_id": get_str(layers, A.USER_ID, limit),
        "email": get_str(layers, A.EMAIL, limit),
        "account_domain": get_str(layers, A.ACCOUNT_DOMAIN, limit),
        "conversation_id": get_str(layers, A.CONVERSATION_ID, limit),
        "message_id": get_str(layers[:1], A.MESSAGE_ID, limit),
        "feature": get_str(layers, (A.FEATURE,), limit),
    }
    for field_name, attr in A.RELATIONS.items():
        common[field_name] = get_str(layers, (attr,), limit)
    return common


def _llm_record(
    span: Span,
    attrs: Attrs,
    layers: Sequence[Attrs],
    operation: str,
    common: dict[str, Any],
    options: ConvertOptions,
    exclusive_input: bool,
) -> UsageRecord:
    limit = options.max_field_chars
    cache_read = get_count(attrs, A.CACHE_READ_TOKENS)
    cache_write = get_count(attrs, A.CACHE_WRITE_TOKENS)
    reasoning = get_count(attrs, A.REASONING_TOKENS)
    reported_input = get_count(attrs, A.INPUT_TOKENS)
    reported_output = get_count(attrs, A.OUTPUT_TOKENS)
    input_tokens, output_tokens = inclusive_counts(
        reported_input, reported_output, cache_read, cache_write, reasoning, exclusive_input=exclusive_input
    )
    total_tokens = get_count(attrs, A.TOTAL_TOKENS)
    if (input_tokens, output_tokens) != (reported_input, reported_output):
        total_tokens = None  # a reported total was made of the exclusive counts
    if total_tokens is None and input_tokens is not None:
        if output_tokens is not None:
            total_tokens = input_tokens + output_tokens
        elif operation == "embeddings":  # embeddings have no output: the total is the input
            total_tokens = input_tokens
    reported = first((attrs,), A.REPORTED_COST)
    end = span.end_time_unix_nano
    record = UsageRecord(
        idempotency_key="",
        kind="llm",
        type=operation,
        occurred_at=span.start_time_unix_nano,
        latency_ms=(end - span.start_time_unix_nano) // 1_000_000 if end >= span.start_time_unix_nano else None,
        provider=normalise_provider(get_str(layers, A.PROVIDER, limit)),
        request_model=get_str((attrs,), A.REQUEST_MODEL, limit) or _invocation_model(attrs),
        response_model=get_str((attrs,), A.RESPONSE_MODEL, limit),
        operation=operation,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        reported_cost_usd=(
            as_decimal(reported[0], reported[1], limit=MAX_COST_USD, positive=False) if reported else None
        ),
        status="error" if span.status.code == Status.STATUS_CODE_ERROR else "success",
        error_type=get_str((attrs,), A.ERROR_TYPE, limit),
        meta=read_meta(layers, limit),
        query=prompt_text(attrs, options.content_max_chars) if options.content_capture else None,
        **common,
    )
    if record.status == "error" and record.error_type is None and span.status.message:
        record.error_type = span.status.message[:200]
    return record


def inclusive_counts(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    *,
    exclusive_input: bool,
) -> tuple[int | None, int | None]:
    """Input and output in the GenAI conventions' inclusive form (DESIGN.md "One token contract").

    Input excludes the cache tokens when the source is known to pass exclusive counts through
    (`exclusive_input`), or when the parts are larger than the whole, which inclusive counts can
    never be; likewise output and reasoning tokens.
    """
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and cached and (exclusive_input or cached > input_tokens):
        input_tokens += cached
    if output_tokens is not None and reasoning and reasoning > output_tokens:
        output_tokens += reasoning
    return input_tokens, output_tokens


def _invocation_model(attrs: Attrs) -> str | None:
    for name in A.INVOCATION_PARAMETERS:
        raw = attrs.get(name)
        if not isinstance(raw, str):
            continue
        try:
            params = json.loads(raw)
        except ValueError:
            continue
        model = params.get("model") if isinstance(params, dict) else None
        if isinstance(model, str) and model:
            return model
    return None
