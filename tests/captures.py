"""Load the span captures in tests/fakes/captures (real instrumentation libraries calling the fake
provider, see tests/fakes/INSTRUMENTATIONS.md) as OTLP protobuf spans, with what the server said."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

CAPTURES = Path(__file__).parent / "fakes" / "captures"
_STATUS = {"UNSET": Status.STATUS_CODE_UNSET, "OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}


@dataclass
class Call:
    library: str
    name: str
    exchanges: list[dict[str, Any]]  # what the fake provider received and answered
    spans: list[tuple[Span, str]]  # (span, instrumentation scope name)


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def to_span(data: dict[str, Any]) -> Span:
    span = Span(
        name=data["name"],
        trace_id=bytes.fromhex(data["trace_id"]),
        span_id=bytes.fromhex(data["span_id"]),
        parent_span_id=bytes.fromhex(data["parent_span_id"] or ""),
        start_time_unix_nano=data["start_time_unix_nano"],
        end_time_unix_nano=data["end_time_unix_nano"],
    )
    span.status.code = _STATUS[data["status"]["code"]]
    span.status.message = data["status"]["description"] or ""
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in data["attributes"].items())
    for event in data.get("events", []):
        added = span.events.add(name=event["name"], time_unix_nano=event.get("timestamp_unix_nano") or 0)
        added.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in event["attributes"].items())
    return span


def load_calls() -> list[Call]:
    calls = []
    for path in sorted(CAPTURES.glob("*.json")):
        data = json.loads(path.read_text())
        for call in data["calls"]:
            spans = [(to_span(s), s["scope"]["name"]) for s in call["spans"]]
            calls.append(Call(path.stem, call["call"], call["server"], spans))
    return calls
