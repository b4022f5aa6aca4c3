"""Building real spans with the OpenTelemetry SDK, and raw OTLP requests for bad-input tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

T0 = 1_763_900_000_000_000_000  # 2025-11-23T12:13:20Z in ns


def llm_attributes(
    model: str = "gpt-4o-mini", provider: str = "openai", input_tokens: int = 1000, output_tokens: int = 500, **extra: Any
) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }


def make_spans(
    build: Callable[[Tracer], None], resource: dict[str, Any] | None = None
) -> Sequence[ReadableSpan]:
    """Run `build` with a real SDK tracer and return the finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-app", **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("spanmeter-tests"))
    provider.shutdown()
    return memory.get_finished_spans()


def llm_spans(count: int, *, customer: str = "acme", **attrs: Any) -> Sequence[ReadableSpan]:
    def build(tracer: Tracer) -> None:
        for i in range(count):
            with tracer.start_as_current_span(
                f"chat {i}", kind=SpanKind.CLIENT, attributes=llm_attributes(**attrs), start_time=T0 + i * 1_000_000
            ) as span:
                span.set_attribute("user.id", f"user-{i % 3}")
                span.set_attribute("gen_ai.conversation.id", f"conv-{i % 2}")

    return make_spans(build, {"usage.customer.id": customer})


def error_span(tracer: Tracer) -> None:
    with tracer.start_as_current_span("chat failing", attributes=llm_attributes(input_tokens=0, output_tokens=0)) as s:
        s.set_status(Status(StatusCode.ERROR, "rate limited"))
        s.set_attribute("error.type", "429")


def request_of(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request the SDK's own encoder makes of these spans."""
    return encode_spans(spans)


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON of a request: hex ids, integer enums (as the OTLP spec requires)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(request, use_integers_for_enums=True)

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (_b64_to_hex(v) if k in ("traceId", "spanId", "parentSpanId") else fix(v)) for k, v in value.items()
            }
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return fix(data)  # type: ignore[no-any-return]


def _b64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def raw_span(span_id: int, attributes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One OTLP/JSON span with hand-written attributes (for values the SDK refuses to make)."""
    return {
        "traceId": fields.pop("traceId", "5b8efff798038103d269b633813fc60c"),
        "spanId": fields.pop("spanId", f"{span_id:016x}"),
        "name": fields.pop("name", f"span {span_id}"),
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 250_000_000),
        "attributes": [{"key": k, "value": v} for k, v in attributes.items()],
        **fields,
    }


def json_request(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    resource_attrs = [{"key": "service.name", "value": {"stringValue": "raw"}}]
    resource_attrs += [{"key": k, "value": {"stringValue": v}} for k, v in (resource or {}).items()]
    return json.dumps(
        {"resourceSpans": [{"resource": {"attributes": resource_attrs}, "scopeSpans": [{"spans": spans}]}]}
    ).encode()


def s(value: str) -> dict[str, str]:
    return {"stringValue": value}


def i(value: int | str) -> dict[str, Any]:
    return {"intValue": value}


def llm_raw_attrs(**overrides: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": s("chat"),
        "gen_ai.provider.name": s("openai"),
        "gen_ai.request.model": s("gpt-4o-mini"),
        "gen_ai.usage.input_tokens": i(100),
        "gen_ai.usage.output_tokens": i(20),
    }
    attrs.update(overrides)
    return attrs
