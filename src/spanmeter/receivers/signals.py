"""The OTLP signals both receivers serve: one row each, so gRPC and HTTP cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanmeter.receivers.ingest import Ingest


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    http_path: str
    grpc_service: str
    request_type: type[Message]

    def handler(self, ingest: Ingest) -> Callable[..., Awaitable[Any]]:
        return getattr(ingest, f"export_{self.name}")  # type: ignore[no-any-return]


SIGNALS = (
    Signal("traces", "/v1/traces", "opentelemetry.proto.collector.trace.v1.TraceService", ExportTraceServiceRequest),
    Signal("logs", "/v1/logs", "opentelemetry.proto.collector.logs.v1.LogsService", ExportLogsServiceRequest),
    Signal(
        "metrics", "/v1/metrics", "opentelemetry.proto.collector.metrics.v1.MetricsService", ExportMetricsServiceRequest
    ),
)
