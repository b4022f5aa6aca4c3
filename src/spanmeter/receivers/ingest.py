"""The one ingest path behind both OTLP receivers: convert → price → store → answer.

Traces and logs become records; metrics are accepted and answered with a partial-success message.

A request is answered only after its records are committed. Spans that cannot become valid
records are reported through partial success; everything valid in the same request is stored.
Failures are classified once here (`Refusal`) and mapped to gRPC codes and HTTP statuses by the
receivers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final

from google.protobuf.message import Message
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
from spanmeter.convert.values import InvalidSpan
from spanmeter.errors import Overloaded, StorageError, TooManyRecords
from spanmeter.metrics import Metrics
from spanmeter.pricing import Pricer
from spanmeter.receivers.decode import decode
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.base import Rejected, WriteResult
from spanmeter.store.port import AttentionCounts, RecordStore

log = logging.getLogger(__name__)

# Bodies this large are decoded and converted off the event loop (~0.15 s of conversion; an SDK's
# default 512-span batch, ~300 kB, stays on the loop's faster path).
OFF_LOOP_BYTES: Final = 1024 * 1024
# Costs are stored as signed 64-bit nano-USD.
MAX_STORED_COST_USD: Final = Decimal(2**63 - 1).scaleb(-9)


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

    def __init__(
        self,
        store: RecordStore,
        pricer: Pricer,
        options: ConvertOptions,
        metrics: Metrics,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.max_in_flight_bytes = max_in_flight_bytes
        self._in_flight = 0  # bytes of the request bodies being decoded, converted and stored
        # One thread: large requests are converted one at a time (their objects are most of the
        # memory a request takes), beside the event loop.
        self._converter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spanmeter-convert")
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

    def close(self) -> None:
        self._converter.shutdown(wait=True)

    # --- raw bodies: what both receivers call ---------------------------------------------------
    def check_room(self) -> None:
        """Refuse (503 / UNAVAILABLE) while the write queue is full: before a body is read,
        decoded or converted, so a storm of requests it cannot take costs next to nothing."""
        if (error := self.store.overloaded()) is not None:
            self.metrics.requests_failed.labels("overloaded").inc()
            raise Refusal("unavailable", f"spanmeter is overloaded: {error}; retry later", error.retry_after)

    async def receive(self, signal: str, body: bytes, content_type: str, transport: str) -> Message:
        """Decode, convert, price and store one export request's body (decompressed); its response.

        Raises Refusal, or BadRequest for a body that is no valid request. Bodies in flight are
        bounded (max_in_flight_bytes: past it, 503 / UNAVAILABLE; one request alone always gets
        in), and one of OFF_LOOP_BYTES or more is decoded and converted in a worker thread, one
        at a time, so that the event loop goes on answering small requests and health checks.
        """
        if signal != "metrics":
            self.check_room()
        size = len(body)
        if self._in_flight and self._in_flight + size > self.max_in_flight_bytes:
            self.metrics.requests_failed.labels("memory").inc()
            raise Refusal(
                "unavailable",
                f"spanmeter is busy with {self._in_flight} bytes of requests; this one's {size} would pass the"
                f" limit of {self.max_in_flight_bytes} (receivers::otlp::max_in_flight_bytes); retry later",
                1.0,
            )
        self._in_flight += size
        try:
            if size >= OFF_LOOP_BYTES:
                work = functools.partial(contextvars.copy_context().run, self._prepare, signal, body, content_type, transport)
                response, converted = await asyncio.get_running_loop().run_in_executor(self._converter, work)
            else:
                response, converted = self._prepare(signal, body, content_type, transport)
            if converted is not None:
                await self._write(converted)
                _partial_success(response, converted)
            return response
        finally:
            self._in_flight -= size

    def _prepare(self, signal: str, body: bytes, content_type: str, transport: str) -> tuple[Message, Converted | None]:
        """The CPU part: decode, convert, price (on the event loop or in the converter thread)."""
        if signal == "traces":
            traces = decode(body, content_type, ExportTraceServiceRequest)
            return ExportTraceServiceResponse(), self._convert_traces(traces, transport, None)
        if signal == "logs":
            logs = decode(body, content_type, ExportLogsServiceRequest)
            return ExportLogsServiceResponse(), self._convert_logs(logs, transport, None)
        return _metrics_response(decode(body, content_type, ExportMetricsServiceRequest)), None

    # --- decoded requests -----------------------------------------------------------------------
    async def export_traces(
        self, request: ExportTraceServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportTraceServiceResponse:
        converted = self._convert_traces(request, transport, workspace)
        await self._write(converted)
        response = ExportTraceServiceResponse()
        _partial_success(response, converted)
        return response

    async def export_logs(
        self, request: ExportLogsServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportLogsServiceResponse:
        converted = self._convert_logs(request, transport, workspace)
        await self._write(converted)
        response = ExportLogsServiceResponse()
        _partial_success(response, converted)
        return response

    async def export_metrics(
        self, request: ExportMetricsServiceRequest, transport: str, workspace: str | None = None
    ) -> ExportMetricsServiceResponse:
        return _metrics_response(request)

    def _convert_traces(self, request: ExportTraceServiceRequest, transport: str, workspace: str | None) -> Converted:
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        self._spans_received[transport].inc(spans)
        return self._price(convert_traces(request, self._options(workspace), time.time_ns()))

    def _convert_logs(self, request: ExportLogsServiceRequest, transport: str, workspace: str | None) -> Converted:
        logs = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        self._logs_received[transport].inc(logs)
        return self._price(convert_logs(request, self._options(workspace), time.time_ns()))

    async def write_records(self, records: list[UsageRecord]) -> WriteResult:
        """Price and store records a receiver built itself (the REST ingest, in the workspace of
        `workspace()`); raises Refusal as the OTLP exports do, "invalid" for a cost too large to
        store. Records the store refused (`WriteResult.refused`: a value it cannot hold) are
        counted as rejected, as OTLP's are; the caller answers for them (`refused_where`)."""
        converted = self._price(Converted(records=records))
        if converted.rejected:
            raise Refusal("invalid", converted.message)
        return await self._write(converted)

    def workspace(self) -> str:
        """The workspace of the request being handled: the API key's, else the configured one."""
        return self._options(None).workspace

    def _price(self, converted: Converted) -> Converted:
        unstorable = []
        for record, record_id in zip(converted.records, new_record_id.many(len(converted.records)), strict=True):
            record.id = record_id
            if self.pricer.price(record):
                self.metrics.reported_cost_mismatch.inc()
            if record.cost_usd is not None and record.cost_usd > MAX_STORED_COST_USD:  # an extreme price override
                unstorable.append(record)
        for record in unstorable:
            converted.records.remove(record)
            converted.reject(
                f"record {record.idempotency_key[:80]!r}",
                InvalidSpan(f"its cost {record.cost_usd} USD is above the largest stored ({MAX_STORED_COST_USD} USD)"),
            )
        return converted

    async def _write(self, converted: Converted) -> WriteResult:
        started = time.perf_counter()
        # The rejected spans of a request with records are counted in the records' transaction
        # (with those the store refuses): no transaction of their own, never one without the other.
        rejected = Rejected(self.workspace(), converted.rejected) if converted.rejected and converted.records else None
        try:
            result = await self.store.write(converted.records, rejected)
        except Overloaded as error:
            self.metrics.requests_failed.labels("overloaded").inc()
            raise Refusal("unavailable", f"spanmeter is overloaded: {error}; retry later", error.retry_after) from None
        except TooManyRecords as error:
            self.metrics.requests_failed.labels("too_large").inc()
            raise Refusal("too_large", str(error)) from None
        except StorageError as error:
            self.metrics.requests_failed.labels("storage").inc()
            self.metrics.storage_errors.labels(error.reason).inc()
            raise Refusal("unavailable", f"{error}; retry later", 1.0) from None
        for record, why in result.refused:
            converted.reject(refused_where(record), InvalidSpan(why))
        self._count(result, converted.rejected, started)
        if converted.rejected and not converted.records and isinstance(self.store, AttentionCounts):
            try:  # kept across restarts for the dashboard; a failure leaves the answer as it is
                await self.store.count_rejected(self.workspace(), converted.rejected)
            except StorageError as error:
                log.warning("could not store the count of %d rejected spans: %s", converted.rejected, error)
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


def refused_where(record: UsageRecord) -> str:
    """How a record the store refused is named in an answer (OTLP partial success, REST errors)."""
    return f"record {record.idempotency_key[:80]!r}"


def _partial_success(response: Message, converted: Converted) -> None:
    if converted.rejected:
        partial = response.partial_success  # type: ignore[attr-defined]
        if isinstance(response, ExportTraceServiceResponse):
            partial.rejected_spans = converted.rejected
        else:
            partial.rejected_log_records = converted.rejected
        partial.error_message = converted.message


def _metrics_response(request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
    """Metrics are accepted, so apps exporting every signal here get no errors, and not used."""
    response = ExportMetricsServiceResponse()
    if request.resource_metrics:
        response.partial_success.error_message = METRICS_NOT_USED
    return response


class _Children(dict[str, Any]):
    """A labelled metric's children by their one label value, made on first use."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, label: str) -> Any:
        child = self[label] = self.metric.labels(label)
        return child
