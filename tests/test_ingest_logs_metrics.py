"""OTLP logs (the OTel Events API) become `event` records; OTLP metrics are accepted and not used.
Sent with the real OTel SDK log and metric exporters, over gRPC and HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from tests.conftest import RunningCollector
from tests.otlp_helpers import T0

Exporters = dict[str, Callable[[RunningCollector], object]]
LOG_EXPORTERS: Exporters = {
    "grpc": lambda c: GrpcLogExporter(endpoint=c.grpc_endpoint, insecure=True),
    "http": lambda c: HttpLogExporter(endpoint=f"{c.http_url}/v1/logs"),
}


def emit_events(exporter: object) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "shop", "usage.customer.id": "acme"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))  # type: ignore[arg-type]
    logger = provider.get_logger("shop.events")
    logger.emit(event_name="checkout.completed", timestamp=T0, attributes={
        "usage.event.family": "commercial", "user.id": "dev-7", "usage.meta.plan": "pro"})
    logger.emit(timestamp=T0 + 1, attributes={"usage.event.name": "FIRST_API_CALL", "usage.idempotency_key": "fac-1"})
    # GenAI instrumentations log every model call; those calls are counted from their spans.
    logger.emit(event_name="gen_ai.client.inference.operation.details", timestamp=T0 + 2,
                attributes={"gen_ai.usage.input_tokens": 10})
    logger.emit(timestamp=T0 + 3, body="a plain log line")
    provider.shutdown()


@pytest.mark.parametrize("transport", list(LOG_EXPORTERS))
def test_event_log_records_become_event_records(collector: RunningCollector, transport: str) -> None:
    emit_events(LOG_EXPORTERS[transport](collector))
    records = {r.type: r for r in collector.records()}
    assert set(records) == {"checkout.completed", "FIRST_API_CALL"}
    checkout = records["checkout.completed"]
    assert (checkout.kind, checkout.event_family, checkout.user_id, checkout.customer_id) == (
        "event", "commercial", "dev-7", "acme")
    assert checkout.meta == {"plan": "pro"} and checkout.occurred_at == T0 and checkout.service_name == "shop"
    assert checkout.idempotency_key.startswith("log:")
    assert records["FIRST_API_CALL"].idempotency_key == "fac-1"
    assert collector.metric("spanmeter_log_records_received_total", {"transport": transport}) == 4


def test_the_same_log_record_sent_twice_is_one_record(collector: RunningCollector) -> None:
    emit_events(LOG_EXPORTERS["http"](collector))
    emit_events(LOG_EXPORTERS["grpc"](collector))
    assert len(collector.records()) == 2
    assert collector.metric("spanmeter_duplicates_total") == 2


def test_invalid_log_record_is_rejected_through_partial_success(collector: RunningCollector) -> None:
    body = {"resourceLogs": [{"scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
        {"timeUnixNano": str(T0), "eventName": "ok"},
        {"timeUnixNano": str(T0), "eventName": "bad", "attributes": [
            {"key": "usage.event.family", "value": {"stringValue": "impulse"}}]},
        {"eventName": "no time"},
    ]}]}]}
    response = httpx.post(f"{collector.http_url}/v1/logs", json=body)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedLogRecords"]) == 2
    assert "usage.event.family must be one of intent, evaluation" in partial["errorMessage"]
    assert "time_unix_nano or observed_time_unix_nano is required" in partial["errorMessage"]
    assert [r.type for r in collector.records()] == ["ok"]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metrics_are_accepted_not_used(collector: RunningCollector, transport: str) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("app").create_counter("requests").add(3)
    data = reader.get_metrics_data()
    exporter = (GrpcMetricExporter(endpoint=collector.grpc_endpoint, insecure=True) if transport == "grpc"
                else HttpMetricExporter(endpoint=f"{collector.http_url}/v1/metrics"))
    from opentelemetry.sdk.metrics.export import MetricExportResult

    assert exporter.export(data) == MetricExportResult.SUCCESS  # type: ignore[arg-type]
    assert collector.records() == []


def test_metrics_answer_says_they_are_not_used(collector: RunningCollector) -> None:
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "gauge": {"dataPoints": [
        {"asInt": "1", "timeUnixNano": str(T0)}]}}]}]}]}
    response = httpx.post(f"{collector.http_url}/v1/metrics", json=body)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert "metrics are accepted and not used" in partial["errorMessage"]
    assert int(partial.get("rejectedDataPoints", 0)) == 0
