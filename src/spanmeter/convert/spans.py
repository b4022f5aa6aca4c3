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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanmeter.convert import attributes as A
from spanmeter.convert.call_ids import request_id_from_error, response_id_from_body
from spanmeter.convert.content import prompt_text
from spanmeter.convert.events import event_record, meter_record, read_meta
from spanmeter.convert.fast_path import fast_span
from spanmeter.convert.idempotency import llm_key, request_key, secondary_key, span_event_key, span_key
from spanmeter.convert.langfuse import MODEL_CALL_TYPES as LANGFUSE_CALL_TYPES
from spanmeter.convert.langfuse import Counts, langchain_hints, provider_from_span_name, read_cost, read_usage
from spanmeter.convert.logfire import CALL_SCOPES as LOGFIRE_CALL_SCOPES
from spanmeter.convert.logfire import is_stream_request
from spanmeter.convert.model_call import model_call_record
from spanmeter.convert.values import (
    MAX_COST_USD,
    Facts,
    InvalidSpan,
    as_decimal,
    as_str,
    attributes,
    check_time,
    extract,
    get_count,
    get_str,
    hex_id,
    resource_facts,
)
from spanmeter.pricing import provider_for_model
from spanmeter.record import UsageRecord

MAX_ERRORS_REPORTED: Final = 5


@dataclass(slots=True, frozen=True)
class ConvertOptions:
    workspace: str = "default"
    # gen_ai.operation.name / llm.request.type values counted as model calls; agent, workflow and
    # tool operations are left out by default because they repeat their children's token totals.
    count_operations: frozenset[str] = A.MODEL_OPERATIONS
    max_field_chars: int = 4096
    max_meta_keys: int = 64
    content_capture: bool = False
    content_max_chars: int = 2000
    # Instrumentation scopes known to pass through exclusive input counts (Anthropic's API style).
    exclusive_input_scopes: frozenset[str] = frozenset(A.DEFAULT_EXCLUSIVE_INPUT_SCOPES)
    # Framework scope -> providers whose calls the provider's own instrumentation also traces in
    # every app sending here (opt-in, empty by default): that scope's model-call records of those
    # providers are not kept, the provider-level span is the call. For tracer pairs whose spans
    # share no provider id (OpenInference's LangChain + openai: streamed and failed calls).
    provider_traced: Mapping[str, frozenset[str]] = field(default_factory=dict)


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
        resource = resource_facts(resource_spans.resource)
        shared = resource_fields(resource, options)  # once per resource, not per span
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                try:
                    out.records.extend(convert_span(span, resource, options, received_at, scope, shared))
                except InvalidSpan as error:
                    out.reject(f"span {span.span_id.hex() or '(no id)'} {span.name[:80]!r}", error)
    return out


def convert_span(
    span: Span,
    resource: Facts,
    options: ConvertOptions,
    received_at: int,
    scope: str = "",
    shared: dict[str, Any] | InvalidSpan | None = None,
) -> list[UsageRecord]:
    if shared is None:
        shared = resource_fields(resource, options)
    exclusive_input = scope in options.exclusive_input_scopes
    if scope in LOGFIRE_CALL_SCOPES and is_stream_request(span):
        return []
    records = fast_span(span, resource, shared, options, received_at, exclusive_input)
    if records is None:
        records = general_span(span, resource, options, received_at, exclusive_input, shared)
    traced_below = options.provider_traced.get(scope)
    if traced_below and records:
        records = [r for r in records if not (r.kind == "llm" and r.provider in traced_below)]
    return records


def general_span(
    span: Span,
    resource: Facts,
    options: ConvertOptions,
    received_at: int,
    exclusive_input: bool,
    shared: dict[str, Any] | InvalidSpan,
) -> list[UsageRecord]:
    """Any span, through the full name table (convert/attributes.py)."""
    facts = extract(span.attributes)
    operation = model_operation(facts, options)
    has_event = "event_name" in facts
    has_meter = "meter" in facts or "quantity" in facts
    usage_events = [i for i, e in enumerate(span.events) if any(kv.key == A.EVENT_NAME for kv in e.attributes)]
    if operation is None and not has_event and not has_meter and not usage_events:
        return []  # not usage: nothing to read, nothing to reject

    limit, max_meta = options.max_field_chars, options.max_meta_keys
    layers = (facts, resource)
    common = _common_fields(span, layers, options, shared)
    explicit_key = get_str(layers[:1], "idempotency_key", limit)
    base_key = explicit_key or span_key(common["trace_id"], common["span_id"])
    records: list[UsageRecord] = []

    if operation is not None:
        record = _llm_record(span, facts, layers, operation, common, options, exclusive_input)
        record.idempotency_key = explicit_key or _call_key(span, facts, record, limit) or base_key
        records.append(record)
    if has_event:
        records.append(event_record(layers, common, base_key, span.start_time_unix_nano, limit, max_meta_keys=max_meta))
    if has_meter:
        records.append(meter_record(layers, common, base_key, span.start_time_unix_nano, limit, max_meta_keys=max_meta))
    # The first record of the span keeps the base key; a second kind gets a suffix.
    for record in records[1:]:
        if record.idempotency_key == base_key:
            record.idempotency_key = secondary_key(base_key, record.kind)

    for index in usage_events:
        event = span.events[index]
        event_facts = extract(event.attributes)
        key = get_str((event_facts,), "idempotency_key", limit) or span_event_key(base_key, index)
        occurred = check_time(f"events[{index}].time_unix_nano", event.time_unix_nano or span.start_time_unix_nano)
        records.append(event_record((event_facts, facts, resource), common, key, occurred, limit, max_meta_keys=max_meta))

    for record in records:
        record.received_at = received_at
    return records


def _call_key(span: Span, facts: Facts, record: UsageRecord, limit: int) -> str | None:
    """The key of the provider's call: its response id (an attribute, else inside the raw response
    a tracer recorded), else its request id (an attribute, else quoted in the error); None when the
    span names neither (then the span itself is the key)."""
    own = (facts,)
    response_id = get_str(own, "response_id", limit) or _body_response_id(span, limit)
    if response_id:
        if record.message_id is None:
            record.message_id = response_id
        return llm_key(record.provider, response_id)
    request_id = get_str(own, "request_id", limit) or request_id_from_error(span)
    return request_key(record.provider, request_id) if request_id else None


def _body_response_id(span: Span, limit: int) -> str | None:
    body = mime_type = None
    for kv in span.attributes:
        if kv.key == A.OUTPUT_VALUE:
            body = kv.value.string_value
        elif kv.key == A.OUTPUT_MIME_TYPE:
            mime_type = kv.value.string_value
    found = response_id_from_body(body, mime_type)
    return found if found is not None and len(found) <= limit else None


def model_operation(facts: Facts, options: ConvertOptions) -> str | None:
    """The record type if this span is one model call that counts, else None."""
    found = facts.get("operation")
    if found is not None:
        operation = str(found[2]).lower()
        if operation not in options.count_operations:
            return None
        return A.OPERATION_TYPES.get(operation, operation)
    oi_kind = facts.get("openinference_kind")
    if oi_kind is not None:
        kind = str(oi_kind[2]).upper()
        if kind not in A.OPENINFERENCE_MODEL_KINDS:
            return None
        return "embeddings" if kind == "EMBEDDING" else "chat"
    lf_type = facts.get("langfuse_type")
    if lf_type is not None:
        return LANGFUSE_CALL_TYPES.get(str(lf_type[2]).lower())
    if "traceloop_kind" in facts:
        return None
    # Older emitters: a provider name plus token counts is a model call.
    if "provider" in facts and ("input_tokens" in facts or "output_tokens" in facts):
        return "chat"
    return None


def _common_fields(
    span: Span, layers: Sequence[Facts], options: ConvertOptions, shared: dict[str, Any] | InvalidSpan | None
) -> dict[str, Any]:
    """Fields every record of a span shares: links, who, relations."""
    if span.start_time_unix_nano <= 0:
        raise InvalidSpan("start_time_unix_nano is required")
    check_time("start_time_unix_nano", span.start_time_unix_nano)
    return common_fields(
        layers,
        options,
        trace_id=hex_id(span.trace_id, 16, "trace_id"),
        span_id=hex_id(span.span_id, 8, "span_id"),
        shared=shared,
    )


def resource_fields(resource: Facts, options: ConvertOptions) -> dict[str, Any] | InvalidSpan:
    """The common fields a resource gives every record of it; an invalid one rejects each usage span."""
    limit = options.max_field_chars
    fields: dict[str, Any] = {"workspace": options.workspace}
    try:
        for fact, (_rank, name, value) in resource.items():
            if fact in _SHARED_FACTS and (text := as_str(name, value, limit)):
                fields[fact] = text
        if service_name := get_str((resource,), "service_name", limit):
            fields["service_name"] = service_name
    except InvalidSpan as error:
        return error
    return fields


def common_fields(
    layers: Sequence[Facts],
    options: ConvertOptions,
    *,
    trace_id: str | None,
    span_id: str | None,
    shared: dict[str, Any] | InvalidSpan | None = None,
) -> dict[str, Any]:
    """Links, who and relations of a record; `layers` = (own facts, ..., resource facts), and
    `shared` = resource_fields(layers[-1]) when the caller has it already. Fields without a value
    are left out (the record's default is None): fewer keyword arguments build a record faster."""
    if shared is None:
        shared = resource_fields(layers[-1], options)
    if isinstance(shared, InvalidSpan):
        raise shared
    limit = options.max_field_chars
    common = shared.copy()
    # Only the facts a layer has are read; the nearest layer (span before resource) wins.
    for facts in reversed(layers[:-1]):
        for fact, (_rank, name, value) in facts.items():
            if fact in _SHARED_FACTS:
                if text := as_str(name, value, limit):
                    common[fact] = text
                else:
                    common.pop(fact, None)
    common["trace_id"] = trace_id
    common["span_id"] = span_id
    if message_id := get_str(layers[:1], "message_id", limit):
        common["message_id"] = message_id
    return common


_SHARED_FACTS: Final = frozenset(
    {"customer_id", "user_id", "email", "account_domain", "conversation_id", "feature", *A.RELATIONS}
)


def _llm_record(
    span: Span,
    facts: Facts,
    layers: Sequence[Facts],
    operation: str,
    common: dict[str, Any],
    options: ConvertOptions,
    exclusive_input: bool,
) -> UsageRecord:
    limit = options.max_field_chars
    own = layers[:1]
    reported = facts.get("reported_cost")
    reported_cost = as_decimal(reported[1], reported[2], limit=MAX_COST_USD, positive=False) if reported else None
    provider = get_str(layers, "provider", limit)
    request_model = get_str(own, "request_model", limit) or _invocation_model(facts)
    response_model = get_str(own, "response_model", limit)
    counts = Counts(
        get_count(facts, "input_tokens"),
        get_count(facts, "output_tokens"),
        get_count(facts, "total_tokens"),
        get_count(facts, "cache_read_tokens"),
        get_count(facts, "cache_write_tokens"),
        get_count(facts, "reasoning_tokens"),
        exclusive_input,
    )
    if "langfuse_type" in facts:  # the Langfuse SDK: usage and cost in JSON, no provider name
        if (held := facts.get("langfuse_usage")) is not None and counts.input_tokens is None:
            counts = read_usage(held[2])
        if (held := facts.get("langfuse_cost")) is not None and reported_cost is None:
            reported_cost = read_cost(held[2])
        ls_provider, ls_model = langchain_hints(span)
        request_model = request_model or ls_model
        provider = (provider or ls_provider or provider_for_model(response_model or request_model)
                    or provider_from_span_name(span.name))
    return model_call_record(
        span,
        operation,
        common,
        provider=provider,
        request_model=request_model,
        response_model=response_model,
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        total_tokens=counts.total_tokens,
        cache_read=counts.cache_read,
        cache_write=counts.cache_write,
        reasoning=counts.reasoning,
        exclusive_input=counts.exclusive,
        error_type=get_str(own, "error_type", limit),
        meta=read_meta(layers, limit, options.max_meta_keys),
        reported_cost_usd=reported_cost,
        query=prompt_text(attributes(span.attributes), options.content_max_chars) if options.content_capture else None,
    )


def _invocation_model(facts: Facts) -> str | None:
    held = facts.get("invocation_parameters")
    if held is None or not isinstance(held[2], str):
        return None
    try:
        params = json.loads(held[2])
    except ValueError:
        return None
    model = params.get("model") if isinstance(params, dict) else None
    return model if isinstance(model, str) and model else None
