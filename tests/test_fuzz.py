"""Fuzzing the OTLP decoders (protobuf and JSON) and the converter with hypothesis.

Whatever a client sends, the only exceptions are the documented refusals: `BadRequest` (→ 400 /
INVALID_ARGUMENT) from the decoders; none from the converter, which rejects a span (partial
success) with `InvalidSpan` and carries on; and every record it yields fits the store's columns.

Bounded for CI by the "fuzz" profile (a few seconds per test); `SPANMETER_FUZZ=long` runs the
"fuzz-long" profile, thousands of examples each, by hand.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from spanmeter.convert import attributes as A
from spanmeter.convert.logs import convert_logs
from spanmeter.convert.spans import ConvertOptions, convert_traces
from spanmeter.pricing import Pricer
from spanmeter.receivers.decode import JSON, PROTOBUF, BadRequest, decode
from spanmeter.record import UsageRecord
from spanmeter.store.schema import record_to_row

settings.register_profile(
    "fuzz", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "fuzz-long", max_examples=20_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz-long" if os.environ.get("SPANMETER_FUZZ") == "long" else "fuzz")
REQUEST_TYPES = (ExportTraceServiceRequest, ExportLogsServiceRequest, ExportMetricsServiceRequest)

# --- OTLP messages --------------------------------------------------------------------------------

NAMES = sorted({*A.FACT_INDEX, "usage.meta.plan", "usage.meta.", "usage.meta.ü", "gen_ai.input.messages", "event.name"})
keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=12))
texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["chat", "embeddings", "openai", "anthropic", "gpt-4o-mini", "LLM", "activation", "1e-999999999",
                     "12", "-1", "NaN", "Infinity", "1e400", '{"model": "gpt-4o"}', "x" * 5000]),
)
int64s = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([0, 1, -1, 10**12, 10**12 + 1]))
scalar_values = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), texts),
    st.builds(lambda v: AnyValue(int_value=v), int64s),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=10)),
    st.just(AnyValue()),
)
# One level of arrays and key-value lists: deeper ones are read the same way (any_value recurses).
any_values = st.one_of(
    scalar_values,
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(scalar_values, max_size=3)),
    st.builds(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)),
        st.lists(st.builds(KeyValue, key=keys, value=scalar_values), max_size=3),
    ),
)
attribute_lists = st.lists(st.builds(KeyValue, key=keys, value=any_values), max_size=8)
# Times: the whole fixed64 range, and the edges of what the store holds.
times = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from([0, 1, 1_763_900_000_000_000_000, 2**63 - 1, 2**63, 2**64 - 1]),
)
ids = st.one_of(st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16), st.binary(max_size=20))
MODEL_CALL = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in
              (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o"))]


@st.composite
def spans(draw: Any) -> Span:
    span = Span(
        trace_id=draw(ids), span_id=draw(ids), name=draw(st.text(max_size=10)),
        start_time_unix_nano=draw(times), end_time_unix_nano=draw(times),
        status=Status(code=draw(st.sampled_from([0, 1, 2])), message=draw(st.text(max_size=10))),
    )
    if draw(st.booleans()):  # most interesting spans are model calls with odd extras
        span.attributes.extend(MODEL_CALL)
    span.attributes.extend(draw(attribute_lists))
    for _ in range(draw(st.integers(min_value=0, max_value=1))):
        event = span.events.add(name="e", time_unix_nano=draw(times))
        event.attributes.extend(draw(attribute_lists))
    return span


@st.composite
def trace_requests(draw: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        resource_spans = ResourceSpans(resource=Resource(attributes=draw(attribute_lists)))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            scope = ScopeSpans(spans=draw(st.lists(spans(), max_size=3)))
            scope.scope.name = draw(st.sampled_from(["", "anthropic", "opentelemetry.instrumentation.openai_v2"]))
            resource_spans.scope_spans.append(scope)
        request.resource_spans.append(resource_spans)
    return request


@st.composite
def log_requests(draw: Any) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        logs = [
            LogRecord(
                time_unix_nano=draw(times), observed_time_unix_nano=draw(times), event_name=draw(texts),
                trace_id=draw(ids), span_id=draw(ids), attributes=draw(attribute_lists),
            )
            for _ in range(draw(st.integers(min_value=0, max_value=3)))
        ]
        request.resource_logs.append(ResourceLogs(
            resource=Resource(attributes=draw(attribute_lists)), scope_logs=[ScopeLogs(log_records=logs)]))
    return request


options = st.builds(
    ConvertOptions,
    workspace=st.sampled_from(["default", "w"]),
    max_field_chars=st.sampled_from([10, 4096]),
    max_meta_keys=st.sampled_from([1, 64]),
    content_capture=st.booleans(),
    exclusive_input_scopes=st.sampled_from([frozenset(), frozenset({"anthropic"})]),
)

# --- what the store can hold --------------------------------------------------------------------

_BIND = sqlite3.connect(":memory:")
PRICER = Pricer()


def assert_storable(records: list[UsageRecord]) -> None:
    """Each record prices without error and binds to SQLite as is (no int past 64 bits, no odd type)."""
    for record in records:
        PRICER.price(record)
        row = record_to_row(record)
        _BIND.execute(f"SELECT {', '.join('?' * len(row))}", row)
        assert record.idempotency_key and record.kind and record.type
        assert 0 < record.occurred_at < 2**63


# --- the tests ------------------------------------------------------------------------------------

@FUZZ
@given(request=trace_requests(), opts=options)
def test_the_trace_converter_never_raises_and_yields_storable_records(
    request: ExportTraceServiceRequest, opts: ConvertOptions
) -> None:
    converted = convert_traces(request, opts, 1_763_900_000_000_000_000)
    assert converted.rejected == 0 or converted.message
    assert_storable(converted.records)


@FUZZ
@given(request=log_requests(), opts=options)
def test_the_log_converter_never_raises_and_yields_storable_records(
    request: ExportLogsServiceRequest, opts: ConvertOptions
) -> None:
    converted = convert_logs(request, opts, 1_763_900_000_000_000_000)
    assert converted.rejected == 0 or converted.message
    assert_storable(converted.records)


def decodes_or_refuses(body: bytes, content_type: str) -> list[Any]:
    """Each request type's decoding of `body`: a message, or BadRequest with a message."""
    decoded = []
    for message in REQUEST_TYPES:
        try:
            decoded.append(decode(body, content_type, message))
        except BadRequest as error:
            assert str(error)
    return decoded


@FUZZ
@given(body=st.binary(max_size=512))
def test_the_protobuf_decoder_refuses_garbage_with_bad_request(body: bytes) -> None:
    decodes_or_refuses(body, PROTOBUF)


@FUZZ
@given(request=trace_requests(), cut=st.integers(min_value=0, max_value=4096), flips=st.lists(
    st.tuples(st.integers(min_value=0, max_value=4096), st.integers(min_value=1, max_value=255)), max_size=4))
def test_mangled_protobuf_requests_decode_or_are_refused_and_convert(
    request: ExportTraceServiceRequest, cut: int, flips: list[tuple[int, int]]
) -> None:
    body = bytearray(request.SerializeToString()[: cut or None])
    for at, bits in flips:
        if body:
            body[at % len(body)] ^= bits
    for decoded in decodes_or_refuses(bytes(body), PROTOBUF):
        if isinstance(decoded, ExportTraceServiceRequest):
            assert_storable(convert_traces(decoded, ConvertOptions(), 1).records)
        elif isinstance(decoded, ExportLogsServiceRequest):
            assert_storable(convert_logs(decoded, ConvertOptions(), 1).records)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
              st.text(max_size=12), st.sampled_from(["0102030405060708", "zz", "18446744073709551615"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)
SPAN_FIELDS = ["traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
               "attributes", "events", "status", "timeUnixNano", "observedTimeUnixNano", "eventName", "body"]


@st.composite
def otlp_json(draw: Any) -> bytes:
    """OTLP/JSON-shaped bodies with random values where the fields are."""
    item = draw(st.dictionaries(st.sampled_from(SPAN_FIELDS), json_values, max_size=6))
    if draw(st.booleans()):
        item["attributes"] = [{"key": draw(keys), "value": draw(st.dictionaries(
            st.sampled_from(["stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue"]),
            json_values, max_size=2))} for _ in range(draw(st.integers(min_value=0, max_value=3)))]
    return json.dumps({
        "resourceSpans": [{"resource": draw(json_values), "scopeSpans": [{"spans": [item]}]}],
        "resourceLogs": [{"scopeLogs": [{"logRecords": [item]}]}],
    }).encode()


@FUZZ
@given(body=st.one_of(otlp_json(), st.binary(max_size=256), json_values.map(lambda v: json.dumps(v).encode())))
def test_the_json_decoder_refuses_with_bad_request_and_what_it_decodes_converts(body: bytes) -> None:
    for decoded in decodes_or_refuses(body, JSON):
        if isinstance(decoded, ExportTraceServiceRequest):
            assert_storable(convert_traces(decoded, ConvertOptions(), 1).records)
        elif isinstance(decoded, ExportLogsServiceRequest):
            assert_storable(convert_logs(decoded, ConvertOptions(), 1).records)


def test_deeply_nested_json_is_a_bad_request() -> None:
    for depth in (1_000, 100_000):
        body = b'{"resourceSpans": ' + b"[" * depth + b"]" * depth + b"}"
        assert decodes_or_refuses(body, JSON) == []
