"""Real-shaped GenAI spans, pre-serialised into OTLP ExportTraceServiceRequest bodies.

Each span looks like what the OpenTelemetry GenAI instrumentations (openai-v2, anthropic) emit
for one chat call: `gen_ai.operation.name=chat`, provider, request/response model, a unique
`gen_ai.response.id`, input/output/cache tokens, request parameters, finish reasons,
`server.address`/`server.port`; a few percent are failed calls (status ERROR, `error.type`, no
usage). Spans of one trace share a trace id and a parent (an agent step); ids are random.
The resource carries `service.name`, `usage.customer.id` and the usual SDK attributes.

Spans are serialised once each; requests are assembled from the span bytes at the protobuf wire
level (length-delimited fields), so batch-1 and batch-512 requests can reuse the same spans
cheaply. `check_request` parses a body back to prove the assembly is a valid request.
"""

from __future__ import annotations

import os
import random
import string
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

# (provider, request model, response model, server.address, scope name) — models genai-prices knows.
MODELS = (
    (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "api.openai.com",
        "opentelemetry.instrumentation.openai_v2",
    ),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com", "opentelemetry.instrumentation.openai_v2"),
    (
        "openai",
        "gpt-4.1-mini",
        "gpt-4.1-mini-2025-04-14",
        "api.openai.com",
        "opentelemetry.instrumentation.openai_v2",
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "api.anthropic.com",
        "opentelemetry.instrumentation.anthropic",
    ),
    (
        "anthropic",
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "api.anthropic.com",
        "opentelemetry.instrumentation.anthropic",
    ),
)
SERVICES = ("support-bot", "search-api", "doc-summariser", "agent-worker")
CUSTOMERS = tuple(f"cust_{i:04d}" for i in range(64))
_B62 = string.ascii_letters + string.digits
SPANS_PER_TRACE = 4
ERROR_RATE = 0.02


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, (list, tuple)):
        return KeyValue(
            key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
        )
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@dataclass(slots=True)
class SpanPool:
    """Serialised spans, with the provider index of each (to group them by instrumentation scope)."""

    spans: list[bytes]
    providers: list[int]
    failed: list[bool]  # failed calls: no usage, so no cost (spanmeter: cost_source "none")


def make_spans(count: int, seed: int = 1) -> SpanPool:
    rng = random.Random(seed)
    spans: list[bytes] = []
    providers: list[int] = []
    failed_flags: list[bool] = []
    # Spans happened during the last few hours, oldest first.
    now = time.time_ns()
    start = now - 3 * 3600 * 10**9
    step = (3 * 3600 * 10**9) // max(count, 1)
    trace_id = parent_id = b""
    for i in range(count):
        if i % SPANS_PER_TRACE == 0:
            trace_id = os.urandom(16)
            parent_id = os.urandom(8)
        m = rng.randrange(len(MODELS))
        provider, request_model, response_model, server, _ = MODELS[m]
        begin = start + i * step + rng.randrange(step or 1)
        duration = rng.randrange(300_000_000, 8_000_000_000)
        failed = rng.random() < ERROR_RATE
        if provider == "openai":
            response_id = "chatcmpl-" + "".join(rng.choices(_B62, k=29))
        else:
            response_id = "msg_01" + "".join(rng.choices(_B62, k=22))
        attrs = [
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.provider.name", provider),
            _kv("gen_ai.request.model", request_model),
            _kv("gen_ai.request.max_tokens", rng.choice((1024, 2048, 4096))),
            _kv("gen_ai.request.temperature", rng.choice((0.0, 0.2, 0.7, 1.0))),
            _kv("server.address", server),
            _kv("server.port", 443),
        ]
        status = Status()
        if failed:
            attrs.append(
                _kv("error.type", "RateLimitError" if provider == "anthropic" else "openai.RateLimitError")
            )
            status = Status(code=Status.STATUS_CODE_ERROR, message="rate limit exceeded")
        else:
            input_tokens = rng.randrange(50, 20_000)
            cache_read = rng.randrange(0, input_tokens) if rng.random() < 0.4 else 0
            attrs += [
                _kv("gen_ai.response.model", response_model),
                _kv("gen_ai.response.id", response_id),
                _kv("gen_ai.response.finish_reasons", ["stop" if provider == "openai" else "end_turn"]),
                _kv("gen_ai.output.type", "text"),
                _kv("gen_ai.usage.input_tokens", input_tokens),
                _kv("gen_ai.usage.output_tokens", rng.randrange(1, 2_000)),
            ]
            if cache_read:
                attrs.append(_kv("gen_ai.usage.cache_read.input_tokens", cache_read))
            if provider == "anthropic" and rng.random() < 0.2:
                attrs.append(
                    _kv(
                        "gen_ai.usage.cache_creation.input_tokens",
                        rng.randrange(0, input_tokens - cache_read + 1),
                    )
                )
        span = Span(
            trace_id=trace_id,
            span_id=os.urandom(8),
            parent_span_id=parent_id,
            name=f"chat {request_model}",
            kind=Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=begin,
            end_time_unix_nano=begin + duration,
            attributes=attrs,
            status=status,
        )
        spans.append(span.SerializeToString())
        providers.append(0 if provider == "openai" else 1)
        failed_flags.append(failed)
    return SpanPool(spans, providers, failed_flags)


def _resource(rng: random.Random) -> bytes:
    attrs = [
        _kv("service.name", rng.choice(SERVICES)),
        _kv("service.version", "1.14.2"),
        _kv("deployment.environment.name", "production"),
        _kv("host.name", f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}"),
        _kv("telemetry.sdk.language", "python"),
        _kv("telemetry.sdk.name", "opentelemetry"),
        _kv("telemetry.sdk.version", "1.38.0"),
        _kv("usage.customer.id", rng.choice(CUSTOMERS)),
        _kv("usage.user.id", f"user_{rng.randrange(1_000):03d}"),  # tokens& events need a developer
    ]
    return Resource(attributes=attrs).SerializeToString()


_SCOPES = tuple(
    InstrumentationScope(name=name, version="2.1b0").SerializeToString()
    for name in ("opentelemetry.instrumentation.openai_v2", "opentelemetry.instrumentation.anthropic")
)


def make_requests(pool: SpanPool, start: int, count: int, batch: int, seed: int = 2) -> list[bytes]:
    """`count` request bodies of `batch` spans each, from pool.spans[start:]. One resource (one SDK
    process, one customer) per request; its spans grouped into one ScopeSpans per instrumentation."""
    if start + count * batch > len(pool.spans):
        raise ValueError(f"the span pool has {len(pool.spans)} spans; {start + count * batch} needed")
    rng = random.Random(seed + batch * 7919 + start)
    bodies = []
    for r in range(count):
        lo = start + r * batch
        groups: tuple[list[bytes], list[bytes]] = ([], [])
        for i in range(lo, lo + batch):
            groups[pool.providers[i]].append(_field(2, pool.spans[i]))
        scope_spans = b"".join(
            _field(2, _field(1, _SCOPES[g]) + b"".join(spans)) for g, spans in enumerate(groups) if spans
        )
        bodies.append(_field(1, _field(1, _resource(rng)) + scope_spans))
    return bodies


def check_request(body: bytes, batch: int) -> None:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if n != batch:
        raise AssertionError(f"assembled request has {n} spans, expected {batch}")
