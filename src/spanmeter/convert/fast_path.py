"""The common model-call span, read in one pass: the hot path of conversion.

Most spans that reach spanmeter are one of two kinds: a model call described with the current
GenAI semantic-convention names (operation, provider, models, response id, token counts, the
customer stamped by the usage context), or a span that is no usage at all (HTTP, DB). `fast_span`
reads those straight into the record's fields: typed reads of the expected value kind, no facts
table, no ranking of alternative names. It answers None for anything else, and the general path
(`spans.convert_span`) converts the span from scratch with the same result rules:

- an attribute name the general table knows (FACT_INDEX) that is not the first-ranked name of a
  fact read here (older or vendor names, usage events, meters, explicit keys, reported costs...),
  `usage.meta.*`, a repeated name, or a value not of the expected kind or range;
- span events, content capture, a missing or too late start time, a model call without an operation or a
  provider on the span, a resource the general path would reject.

tests/test_convert_fast_path.py checks, over random spans, that whenever this path answers, the
general path gives the very same records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert import attributes as A
from spanmeter.convert.events import read_meta
from spanmeter.convert.idempotency import llm_key, request_key, span_key
from spanmeter.convert.model_call import model_call_record
from spanmeter.convert.values import MAX_TIME_NS, MAX_TOKENS, META, Facts, InvalidSpan
from spanmeter.record import UsageRecord

if TYPE_CHECKING:
    from spanmeter.convert.spans import ConvertOptions

# Slots of the values read here.
(OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL, RESPONSE_ID, REQUEST_ID, ERROR_TYPE, MESSAGE_ID,
 INPUT, OUTPUT, TOTAL, CACHE_READ, CACHE_WRITE, REASONING, SLOTS) = range(15)
_STRING_SLOTS: Final = {
    A.OPERATION[0]: OPERATION,
    A.PROVIDER[0]: PROVIDER,
    A.REQUEST_MODEL[0]: REQUEST_MODEL,
    A.RESPONSE_MODEL[0]: RESPONSE_MODEL,
    A.RESPONSE_ID[0]: RESPONSE_ID,
    A.REQUEST_ID[0]: REQUEST_ID,
    A.ERROR_TYPE[0]: ERROR_TYPE,
    A.MESSAGE_ID[0]: MESSAGE_ID,
}
_COUNT_SLOTS: Final = {
    A.INPUT_TOKENS[0]: INPUT,
    A.OUTPUT_TOKENS[0]: OUTPUT,
    A.TOTAL_TOKENS[0]: TOTAL,
    A.CACHE_READ_TOKENS[0]: CACHE_READ,
    A.CACHE_WRITE_TOKENS[0]: CACHE_WRITE,
    A.REASONING_TOKENS[0]: REASONING,
}
# The record fields a span may set for every record of it (who, relations), by first-ranked name,
# in slots after the counts.
_SHARED_FACTS: Final = tuple(
    fact
    for fact in A.FACTS
    if fact in ("customer_id", "user_id", "email", "account_domain", "conversation_id", "feature", *A.RELATIONS)
)
_SLOT_OF: Final = {
    **_STRING_SLOTS,
    **_COUNT_SLOTS,
    **{A.FACTS[fact][0]: SLOTS + i for i, fact in enumerate(_SHARED_FACTS)},
}
_ALL_SLOTS: Final = SLOTS + len(_SHARED_FACTS)
_NO_WHO: Final = [None] * len(_SHARED_FACTS)
# Every attribute name → its slot, or what to do with it: names only the general table reads
# (older or vendor names, usage.meta.*) send the span there; other names are not usage. One dict
# lookup per attribute: names seen are remembered (bounded), so the prefix test runs once per name.
_GENERAL: Final = -1
_IGNORED: Final = -2
_BODY: Final = -3  # a raw response body: read by the general path when the span has no response id
_NAMES: Final[dict[str, int]] = {**{name: _GENERAL for name in A.FACT_INDEX}, **_SLOT_OF, A.OUTPUT_VALUE: _BODY}
_NAMES_LIMIT: Final = len(_NAMES) + 10_000


def _classify(name: str) -> int:
    slot = _GENERAL if name.startswith(A.META_PREFIX) else _IGNORED
    if len(_NAMES) < _NAMES_LIMIT:
        _NAMES[name] = slot
    return slot


def fast_span(
    span: Span,
    resource: Facts,
    shared: dict[str, Any] | InvalidSpan,
    options: ConvertOptions,
    received_at: int,
    exclusive_input: bool,
) -> list[UsageRecord] | None:
    """The span's records, or None when the general path must convert it. Never raises: a span
    the general path would reject goes to it, for its error message."""
    if isinstance(shared, InvalidSpan) or options.content_capture:
        return None
    limit = options.max_field_chars
    values: list[Any] = [None] * _ALL_SLOTS
    slot_of = _NAMES.get
    seen = body = False
    for kv in span.attributes:
        key = kv.key
        slot = slot_of(key)
        if slot is None:
            slot = _classify(key)
        if slot < 0:
            if slot == _GENERAL:
                return None  # a name only the general table reads
            body = body or slot == _BODY
            continue
        if values[slot] is not None:
            return None  # a repeated name
        seen = True
        if INPUT <= slot < SLOTS:
            any_ = kv.value
            count = any_.int_value
            if count < 0 or count > MAX_TOKENS or (not count and any_.WhichOneof("value") != "int_value"):
                return None
            values[slot] = count
        else:
            text = kv.value.string_value
            if not text or len(text) > limit:
                return None  # not a string, empty, or too long: the general path says which
            values[slot] = text
    if len(span.events):
        return None
    if not seen:
        return []  # no usage fact at all: an HTTP or DB span
    operation = values[OPERATION]
    if operation is None or values[PROVIDER] is None:
        return None
    operation = operation.lower()
    if operation not in options.count_operations:
        return []  # an agent, workflow or tool span: its children are the model calls
    operation = A.OPERATION_TYPES.get(operation, operation)
    raw_trace_id, raw_span_id = span.trace_id, span.span_id
    if not 0 < span.start_time_unix_nano <= MAX_TIME_NS or len(raw_trace_id) != 16 or len(raw_span_id) != 8:
        return None
    if not any(raw_trace_id) or not any(raw_span_id):
        return None
    meta: dict[str, str] = {}
    if META in resource:
        try:
            meta = read_meta((resource,), limit, options.max_meta_keys)
        except InvalidSpan:
            return None

    common = shared.copy()
    if values[SLOTS:] != _NO_WHO:  # the span names who or relations of its own
        for i, fact in enumerate(_SHARED_FACTS, SLOTS):
            if values[i] is not None:
                common[fact] = values[i]
    trace_id = common["trace_id"] = raw_trace_id.hex()
    span_id = common["span_id"] = raw_span_id.hex()
    response_id = values[RESPONSE_ID]
    if response_id is None and values[REQUEST_ID] is None and (
        body or (span.status.code == Status.STATUS_CODE_ERROR and "request_id" in span.status.message)
    ):
        return None  # the call's id may be in the body or the error: convert/call_ids.py reads it
    if message_id := values[MESSAGE_ID] or response_id:
        common["message_id"] = message_id
    record = model_call_record(
        span,
        operation,
        common,
        provider=values[PROVIDER],
        request_model=values[REQUEST_MODEL],
        response_model=values[RESPONSE_MODEL],
        input_tokens=values[INPUT],
        output_tokens=values[OUTPUT],
        total_tokens=values[TOTAL],
        cache_read=values[CACHE_READ],
        cache_write=values[CACHE_WRITE],
        reasoning=values[REASONING],
        exclusive_input=exclusive_input,
        error_type=values[ERROR_TYPE],
        meta=meta,
    )
    if response_id:
        record.idempotency_key = llm_key(record.provider, response_id)
    elif values[REQUEST_ID]:
        record.idempotency_key = request_key(record.provider, values[REQUEST_ID])
    else:
        record.idempotency_key = span_key(trace_id, span_id)
    record.received_at = received_at
    return [record]
