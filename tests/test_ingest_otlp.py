"""End to end: the real OTel SDK exporters (gRPC, HTTP protobuf) and raw OTLP/JSON send spans to a
running collector; the stored records carry the right tokens, models, provider, cost, customer, ids."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Tracer

from tests.conftest import RunningCollector
from tests.otlp_helpers import T0, error_span, llm_attributes, llm_spans, make_spans, request_of, to_otlp_json


def expected_cost(model: str, provider: str, input_tokens: int, output_tokens: int, at_ns: int = T0, **kw: int) -> Decimal:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens, **kw)
    when = datetime.fromtimestamp(at_ns / 1e9, UTC)
    return genai_prices.calc_price(usage, model, provider_id=provider, genai_request_timestamp=when).total_price


def check_llm_records(collector: RunningCollector, spans: list, model: str = "gpt-4o-mini") -> None:  # type: ignore[type-arg]
    records = {r.span_id: r for r in collector.records(kind="llm")}
    assert len(records) == len(spans)
    for span in spans:
        record = records[f"{span.context.span_id:016x}"]
        assert record.trace_id == f"{span.context.trace_id:032x}"
        assert record.idempotency_key == f"{record.trace_id}:{record.span_id}"
        assert (record.input_tokens, record.output_tokens, record.total_tokens) == (1000, 500, 1500)
        assert record.provider == "openai"
        assert record.request_model == record.response_model == model
        assert record.customer_id == "acme"
        assert record.service_name == "test-app"
        assert record.user_id and record.user_id.startswith("user-")
        assert record.conversation_id in ("conv-0", "conv-1")
        assert record.occurred_at == span.start_time
        assert record.latency_ms == (span.end_time - span.start_time) // 1_000_000
        assert record.cost_source == "computed"
        assert record.cost_usd == expected_cost(model, "openai", 1000, 500, span.start_time)
        assert record.price_ref and "gpt-4o-mini" in record.price_ref
        assert record.status == "success"


def test_grpc_exporter_spans_become_records(collector: RunningCollector) -> None:
    spans = llm_spans(5)
    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    check_llm_records(collector, list(spans))
    assert collector.metric("spanmeter_records_stored_total", {"kind": "llm"}) == 5
    assert collector.metric("spanmeter_spans_received_total", {"transport": "grpc"}) == 5


def test_http_protobuf_exporter_spans_become_records(collector: RunningCollector) -> None:
    spans = llm_spans(4)
    exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces")
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    check_llm_records(collector, list(spans))


def test_http_exporter_with_gzip(collector: RunningCollector) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    spans = llm_spans(3)
    exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces", compression=Compression.Gzip)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    check_llm_records(collector, list(spans))


def test_grpc_exporter_with_gzip(collector: RunningCollector) -> None:
    from grpc import Compression

    spans = llm_spans(3)
    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, compression=Compression.Gzip)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    check_llm_records(collector, list(spans))


def test_raw_otlp_json_with_hex_ids(collector: RunningCollector) -> None:
    spans = llm_spans(3)
    body = to_otlp_json(request_of(spans))
    # int64 as strings or numbers, and unknown fields, are both fine in OTLP/JSON.
    body["resourceSpans"][0]["futureField"] = {"x": 1}
    response = httpx.post(f"{collector.http_url}/v1/traces", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    check_llm_records(collector, list(spans))


def test_same_batch_twice_is_stored_once(collector: RunningCollector) -> None:
    spans = llm_spans(6)
    for exporter in (GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True),
                     HttpExporter(endpoint=f"{collector.http_url}/v1/traces")):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    body = request_of(spans).SerializeToString()
    response = httpx.post(f"{collector.http_url}/v1/traces", content=body,
                          headers={"content-type": "application/x-protobuf"})
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert len(collector.records()) == 6
    assert collector.metric("spanmeter_duplicates_total") == 12
    assert collector.metric("spanmeter_conflicts_total") == 0
    metrics = httpx.get(f"{collector.http_url}/metrics").text
    assert "spanmeter_duplicates_total 12.0" in metrics


def test_duplicate_with_other_content_is_a_conflict_and_first_wins(collector: RunningCollector) -> None:
    def build(tokens: int):  # type: ignore[no-untyped-def]
        def inner(tracer: Tracer) -> None:
            with tracer.start_as_current_span("chat", attributes=llm_attributes(
                input_tokens=tokens, **{"usage.idempotency_key": "order-42"})):
                pass
        return inner

    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    assert exporter.export(make_spans(build(100))) == SpanExportResult.SUCCESS
    assert exporter.export(make_spans(build(999))) == SpanExportResult.SUCCESS
    [record] = collector.records()
    assert record.idempotency_key == "order-42"
    assert record.input_tokens == 100
    assert collector.metric("spanmeter_duplicates_total") == 1
    assert collector.metric("spanmeter_conflicts_total") == 1


def test_failed_call_is_an_error_record(collector: RunningCollector) -> None:
    exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces")
    assert exporter.export(make_spans(error_span)) == SpanExportResult.SUCCESS
    [record] = collector.records()
    assert record.status == "error"
    assert record.error_type == "429"
    assert (record.input_tokens, record.output_tokens) == (0, 0)


def test_unknown_model_has_no_cost_and_is_counted(collector: RunningCollector) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes=llm_attributes(model="my-private-model-7b")):
            pass

    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    assert exporter.export(make_spans(build)) == SpanExportResult.SUCCESS
    [record] = collector.records()
    assert record.cost_source == "unknown"
    assert record.cost_usd is None
    assert collector.metric("spanmeter_unknown_model_records_total") == 1


def test_event_and_meter_spans(collector: RunningCollector) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("signup", attributes={
            "usage.event.name": "FIRST_API_CALL", "usage.event.family": "activation",
            "usage.product.id": "p1", "usage.product.name": "Search API", "usage.account.domain": "acme.com",
            "usage.meta.plan": "pro", "usage.tags": ["beta", "eu"],
        }):
            pass
        with tracer.start_as_current_span("render", attributes={"usage.meter": "pages", "usage.quantity": 2.5}):
            pass

    exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces")
    assert exporter.export(make_spans(build, {"usage.customer.id": "globex"})) == SpanExportResult.SUCCESS
    records = {r.kind: r for r in collector.records()}
    event, meter = records["event"], records["meter"]
    assert (event.type, event.event_name, event.event_family) == ("FIRST_API_CALL", "FIRST_API_CALL", "activation")
    assert event.product is not None and (event.product.id, event.product.name) == ("p1", "Search API")
    assert event.account_domain == "acme.com" and event.customer_id == "globex"
    assert event.meta == {"plan": "pro"} and event.tags == ["beta", "eu"]
    assert (meter.type, meter.meter, meter.quantity) == ("pages", "pages", Decimal("2.5"))
    assert meter.customer_id == "globex"


def test_one_call_traced_twice_is_one_record_and_no_conflict(collector: RunningCollector) -> None:
    """The Anthropic SDK's own span and an instrumentation's span of one call: two traces, one key."""
    def build(tracer: Tracer) -> None:
        for library_attrs in ({"gen_ai.usage.cache_read.input_tokens": 100}, {"gen_ai.system": "anthropic"}):
            with tracer.start_as_current_span("chat", attributes=llm_attributes(
                    model="claude-haiku-4-5", provider="anthropic", **{"gen_ai.response.id": "msg_01X"},
                    **library_attrs)):
                pass

    spans = make_spans(build)
    assert spans[0].context.trace_id != spans[1].context.trace_id
    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    [record] = collector.records()
    assert record.idempotency_key == "llm:anthropic:msg_01X"
    assert collector.metric("spanmeter_duplicates_total") == 1
    # links and timing differ between the two spans; what is billed does not, except here the
    # cache read count, which only one of them reported: that is a conflict worth a look
    assert collector.metric("spanmeter_conflicts_total") == 1


def test_same_call_same_content_from_two_traces_is_no_conflict(collector: RunningCollector) -> None:
    def build(tracer: Tracer) -> None:
        for _ in range(2):
            with tracer.start_as_current_span("chat", attributes=llm_attributes(**{"gen_ai.response.id": "c-1"})):
                pass

    exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    assert exporter.export(make_spans(build)) == SpanExportResult.SUCCESS
    assert len(collector.records()) == 1
    assert (collector.metric("spanmeter_duplicates_total"), collector.metric("spanmeter_conflicts_total")) == (1, 0)


def test_keep_alive_outlasts_the_sdk_export_interval(collector: RunningCollector) -> None:
    """OTel SDKs export every 5 s on one kept-alive connection: the server must not have closed it."""
    import socket
    import time

    body = request_of(llm_spans(1)).SerializeToString()
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", collector.collector.http_port or 0), timeout=5) as sock:
        for pause in (0.0, 5.5):
            time.sleep(pause)
            sock.sendall(head + body)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
