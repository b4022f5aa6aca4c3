"""The one ingest path behind both OTLP receivers: convert → price → store → answer.

Traces and logs become records; metrics are accepted and answered with a partial-success message.

A request is answered only after its records are committed. Spans that cannot become valid
records are reported through partial success; everything valid in the same request is stored.
Failures are classified once here (`Refusal`) and mapped to gRPC codes and HTTP statuses by the
receivers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanmeter.auth import request_workspace
from spanmeter.convert.logs import convert_logs
from spanmeter.convert.spans import Converted, ConvertOptions, convert_traces
from spanmeter.errors import Overloaded, StorageError
from spanmeter.metrics import Metrics
from spanmeter.pricing import Pricer
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.base import Store, WriteResult

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Refusal(Exception):
    """Why a whole request was refused. `retryable` tells the sender to try again later."""

    kind: str  # "invalid" | "too_large" | "unsupported_media" | "unavailable"
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind == "unavailable"


# One place maps refusals to both protocols (grpc.StatusCode name, HTTP status).
GRPC_CODES: Final = {
    "invalid": "INVALID_ARGUMENT",
    "too_large": "RESOURCE_EXHAUSTED",
    "unsupported_media": "INVALID_ARGUMENT",
    "unavailable": "UNAVAILABLE",
}
HTTP_STATUS: Final = {"invalid": 400, "too_large": 413, "unsupported_media": 415, "unavailable": 503}
METRICS_NOT_USED: Final = (
    "spanmeter stores usage from traces and logs; metrics are accepted and not used (nothing was rejected)"
)


class Ingest:
    """Convert, price and store one OTLP request per call; one method per signal."""

    def __init__(self, store: Store, pricer: Pricer, options: ConvertOptions, metrics: Metrics) -> None:
        self.store = store
        self.pricer = pricer
        self.options = options
        self.metrics = metrics
        # Labelled counters resolved once: `labels()` costs a lock and validation per call (~3 µs
        # of a 1-span request's path each time).
        self._spans_received = _Children(metrics.spans_received)
        self._logs_received = _Children(metrics.log_records_received)
        self._stored = _Children(metrics.records_stored)

    def _options(self, workspace: str | None) -> ConvertOptions:
        # Explicit, else the API key's (bound by the auth middleware / interceptor), else the config's.
        workspace = workspace or request_workspace(self.options.workspace)
        return self.options if workspace == self.options.workspace else replace(self.options, workspace=workspace)

    async def export_traces(
        self, request: ExportTraceServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportTraceServiceResponse:
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        self._spans_received[transport].inc(spans)
        converted = convert_traces(request, self._options(workspace), time.time_ns())
        await self._store(converted)
        response = ExportTraceServiceResponse()
        if converted.rejected:
            response.partial_success.rejected_spans = converted.rejected
            response.partial_success.error_message = converted.message
        return response

    async def export_logs(
        self, request: ExportLogsServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportLogsServiceResponse:
        logs = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        self._logs_received[transport].inc(logs)
        converted = convert_logs(request, self._options(workspace), time.time_ns())
        await self._store(converted)
        response = ExportLogsServiceResponse()
        if converted.rejected:
            response.partial_success.rejected_log_records = converted.rejected
            response.partial_success.error_message = converted.message
        return response

    async def export_metrics(
        self, request: ExportMetricsServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportMetricsServiceResponse:
        """Metrics are accepted, so apps exporting every signal here get no errors, and not used."""
        response = ExportMetricsServiceResponse()
        if request.resource_metrics:
            response.partial_success.error_message = METRICS_NOT_USED
        return response

    async def write_records(self, records: list[UsageRecord]) -> WriteResult:
        """Price and store records a receiver built itself (the REST ingest, in the workspace of
        `workspace()`); raises Refusal("unavailable") as the OTLP exports do."""
        return await self._store(Converted(records=records))

    def workspace(self) -> str:
        """The workspace of the request being handled: the API key's, else the configured one."""
        return self._options(None).workspace

    async def _store(self, converted: Converted) -> WriteResult:
        for record, record_id in zip(converted.records, new_record_id.many(len(converted.records)), strict=True):
            record.id = record_id
            if self.pricer.price(record):
                self.metrics.reported_cost_mismatch.inc()
        started = time.perf_counter()
        try:
            result = await self.store.write(converted.records)
        except Overloaded as error:
            self.metrics.requests_failed.labels("overloaded").inc()
            raise Refusal("unavailable", f"spanmeter is overloaded: {error}; retry later", error.retry_after) from None
        except StorageError as error:
            self.metrics.requests_failed.labels("storage").inc()
            raise Refusal("unavailable", f"{error}; retry later", 1.0) from None
        self._count(result, converted.rejected, started)
        return result

    def _count(self, result: WriteResult, rejected: int, started: float) -> None:
        m = self.metrics
        m.write_seconds.observe(time.perf_counter() - started)
        # Counters are updated only when they move: each update takes a lock.
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        if result.conflicts:
            m.conflicts.inc(result.conflicts)
        if rejected:
            m.rejected.inc(rejected)
        kinds: dict[str, int] = {}
        for record in result.inserted:
            kinds[record.kind] = kinds.get(record.kind, 0) + 1
        for kind, count in kinds.items():  # one metric update per kind, not per record
            self._stored[kind].inc(count)
        if unknown := sum(1 for record in result.inserted if record.cost_source == "unknown"):
            m.unknown_model.inc(unknown)


class _Children(dict[str, Any]):
    """A labelled metric's children by their one label value, made on first use."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, label: str) -> Any:
        child = self[label] = self.metric.labels(label)
        return child
