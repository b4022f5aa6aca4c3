"""Bad input: every kind gets the right status and a message that says what is wrong, and valid
spans in the same request are stored."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import RunningCollector, make_config, running_collector, writer_held
from tests.otlp_helpers import i, json_request, llm_raw_attrs, llm_spans, raw_span, request_of, s

PB = {"content-type": "application/x-protobuf"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def post(collector: RunningCollector, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{collector.http_url}/v1/traces", content=body,
                      headers=headers or {"content-type": "application/json"})


def grpc_export(collector: RunningCollector, body: bytes) -> bytes:
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        return channel.unary_unary(EXPORT)(body, timeout=10)  # type: ignore[no-any-return]


def test_malformed_protobuf_http(collector: RunningCollector) -> None:
    response = post(collector, b"\x0a\xff\xff\xff\xff\x0f garbage", PB)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert "not a valid protobuf ExportTraceServiceRequest" in status.message


def test_malformed_protobuf_grpc(collector: RunningCollector) -> None:
    with pytest.raises(grpc.RpcError) as error:
        grpc_export(collector, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf" in error.value.details()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"resourceSpans": "nope"}', "not a valid OTLP"),
        (json_request([raw_span(1, {}, traceId="zz-not-hex")]), "traceId must be a hex string"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "not a valid OTLP"),
    ],
)
def test_malformed_json(collector: RunningCollector, body: bytes, message: str) -> None:
    response = post(collector, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code_pb2.INVALID_ARGUMENT
    assert message in response.json()["message"]


def test_wrong_content_type_is_415(collector: RunningCollector) -> None:
    response = post(collector, b"hello", {"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/x-protobuf or application/json" in response.json()["message"]


def test_unknown_content_encoding_is_415(collector: RunningCollector) -> None:
    response = post(collector, b"{}", {"content-type": "application/json", "content-encoding": "br"})
    assert response.status_code == 415
    assert "content encoding 'br'" in response.json()["message"]


def test_bad_gzip_is_400(collector: RunningCollector) -> None:
    response = post(collector, b"not gzip at all", {"content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 400
    assert "not valid gzip" in response.json()["message"]


def limited(tmp_path: Path, limit: int = 64 * 1024):  # type: ignore[no-untyped-def]
    return running_collector(make_config(tmp_path, receivers={"otlp": {"max_request_bytes": limit}}))


def test_gzip_bomb_is_413_after_decompression(tmp_path: Path) -> None:
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))  # 50 MiB of spaces, ~50 KiB compressed... well under the limit
    assert len(bomb) < 64 * 1024
    with limited(tmp_path) as collector:
        response = post(collector, bomb, {"content-type": "application/json", "content-encoding": "gzip"})
        assert response.status_code == 413
        assert "decompressed body is over the limit of 65536 bytes" in response.json()["message"]
        # the collector is still serving
        assert post(collector, json_request([raw_span(1, llm_raw_attrs())])).status_code == 200


def test_oversized_body_http_and_grpc(tmp_path: Path) -> None:
    big = request_of(llm_spans(400)).SerializeToString()
    assert len(big) > 64 * 1024
    with limited(tmp_path) as collector:
        response = post(collector, big, PB)
        assert response.status_code == 413
        assert "over the limit of 65536 bytes" in status_pb2.Status.FromString(response.content).message
        with pytest.raises(grpc.RpcError) as error:
            grpc_export(collector, big)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert collector.records() == []


BAD_SPANS = {
    "negative tokens": ({"gen_ai.usage.input_tokens": i(-5)}, "gen_ai.usage.input_tokens must be a non-negative integer, got -5"),
    "string tokens": ({"gen_ai.usage.output_tokens": s("twelve")}, "gen_ai.usage.output_tokens must be a non-negative integer, got string 'twelve'"),
    "numeric string tokens": ({"gen_ai.usage.output_tokens": s("12")}, "must be a non-negative integer, got string '12'"),
    "fractional tokens": ({"gen_ai.usage.input_tokens": {"doubleValue": 1.5}}, "got 1.5"),
    "huge tokens": ({"gen_ai.usage.input_tokens": i("9000000000000000000")}, "above the limit"),
    "huge attribute": ({"usage.customer.id": s("c" * 100_000)}, "usage.customer.id is 100000 characters long"),
    "array for a name": ({"gen_ai.request.model": {"arrayValue": {"values": [s("a")]}}}, "gen_ai.request.model must be a string, got an array"),
}


@pytest.mark.parametrize("case", list(BAD_SPANS))
def test_invalid_span_rejected_valid_ones_stored(collector: RunningCollector, case: str) -> None:
    bad_attrs, message = BAD_SPANS[case]
    body = json_request([
        raw_span(1, llm_raw_attrs()),
        raw_span(2, llm_raw_attrs(**bad_attrs), name="the bad one"),
        raw_span(3, llm_raw_attrs()),
    ])
    response = post(collector, body)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert message in partial["errorMessage"]
    assert "'the bad one'" in partial["errorMessage"]
    assert sorted(r.span_id for r in collector.records()) == [f"{1:016x}", f"{3:016x}"]
    assert collector.metric("spanmeter_rejected_spans_total") == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spanId": ""}, "span_id must be 8 non-zero bytes, got 0 bytes"),
        ({"traceId": ""}, "trace_id must be 16 non-zero bytes, got 0 bytes"),
        ({"traceId": "00000000000000000000000000000000"}, "trace_id must be 16 non-zero bytes"),
        ({"startTimeUnixNano": "0"}, "start_time_unix_nano is required"),
    ],
)
def test_missing_ids_rejected(collector: RunningCollector, fields: dict[str, str], message: str) -> None:
    response = post(collector, json_request([raw_span(1, llm_raw_attrs(), **fields), raw_span(2, llm_raw_attrs())]))
    assert response.status_code == 200
    assert message in response.json()["partialSuccess"]["errorMessage"]
    assert [r.span_id for r in collector.records()] == [f"{2:016x}"]


def test_partial_success_over_grpc_protobuf(collector: RunningCollector) -> None:
    body = json_request([raw_span(1, llm_raw_attrs(**{"gen_ai.usage.input_tokens": i(-1)})), raw_span(2, llm_raw_attrs())])
    request = ExportTraceServiceRequest()
    from google.protobuf.json_format import ParseDict

    from spanmeter.receivers.decode import _hex_ids_to_base64

    ParseDict(_hex_ids_to_base64(json.loads(body)), request)
    response = ExportTraceServiceResponse.FromString(grpc_export(collector, request.SerializeToString()))
    assert response.partial_success.rejected_spans == 1
    assert "must be a non-negative integer" in response.partial_success.error_message
    assert len(collector.records()) == 1


def test_non_usage_spans_are_accepted_and_ignored(collector: RunningCollector) -> None:
    body = json_request([raw_span(1, {"http.request.method": s("GET"), "http.response.body": s("x" * 200_000)})])
    response = post(collector, body)
    assert response.status_code == 200
    assert response.json() == {}
    assert collector.records() == []


def test_full_write_queue_is_503_and_unavailable_with_retry_info(tmp_path: Path) -> None:
    config = make_config(tmp_path, storage={"sqlite": {"max_queued_records": 2, "busy_timeout": 20}})
    with running_collector(config) as collector:
        waiting: list[httpx.Response] = []
        with writer_held(tmp_path / "spanmeter.db"):  # two records wait for the writer: the queue is full
            sender = threading.Thread(target=lambda: waiting.append(post(collector, request_of(llm_spans(2)).SerializeToString(), PB)))
            sender.start()
            while collector.collector.store.queued < 2:
                sender.join(0.01)
            response = post(collector, json_request([raw_span(1, llm_raw_attrs())]))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "overloaded" in response.json()["message"]
            with pytest.raises(grpc.RpcError) as error:
                grpc_export(collector, request_of(llm_spans(1)).SerializeToString())
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            trailers = dict(error.value.trailing_metadata())
            retry = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
            assert retry.retry_delay.seconds == 1
        sender.join(30)
        assert [r.status_code for r in waiting] == [200]
        assert len(collector.records()) == 2


def test_locked_database_is_503_then_recovers(tmp_path: Path) -> None:
    """A store that cannot commit answers 503 (retryable): nothing is acknowledged that is not stored."""
    config = make_config(tmp_path, storage={"sqlite": {"busy_timeout": 0.2}})
    with running_collector(config) as collector:
        blocker = sqlite3.connect(tmp_path / "spanmeter.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            response = post(collector, json_request([raw_span(1, llm_raw_attrs())]))
            assert response.status_code == 503
            assert "storage write failed" in response.json()["message"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert collector.records() == []
        assert post(collector, json_request([raw_span(1, llm_raw_attrs())])).status_code == 200
        assert len(collector.records()) == 1


def test_grpc_gzip_bomb_is_refused_after_decompression(tmp_path: Path) -> None:
    bomb = b"\x00" * (8 * 1024 * 1024)  # 8 MiB that gzip makes ~8 KiB on the wire
    with limited(tmp_path) as collector:
        with (grpc.insecure_channel(collector.grpc_endpoint, compression=grpc.Compression.Gzip) as channel,
              pytest.raises(grpc.RpcError) as error):
            channel.unary_unary(EXPORT)(bomb, timeout=10)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # still serving
        response = ExportTraceServiceResponse.FromString(grpc_export(collector, request_of(llm_spans(1)).SerializeToString()))
        assert not response.HasField("partial_success")
        assert len(collector.records()) == 1


def test_non_usage_span_with_events_is_not_judged(collector: RunningCollector) -> None:
    """An HTTP span with an exception event is no usage: its missing start time rejects nothing."""
    span = raw_span(1, {"http.request.method": s("GET")}, startTimeUnixNano="0",
                    events=[{"name": "exception", "attributes": [{"key": "exception.type", "value": s("E")}]}])
    response = post(collector, json_request([span, raw_span(2, llm_raw_attrs())]))
    assert response.status_code == 200
    assert response.json() == {}
    assert [r.span_id for r in collector.records()] == [f"{2:016x}"]
