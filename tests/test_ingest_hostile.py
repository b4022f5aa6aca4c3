"""Hostile or broken clients: each gets a clear answer about its own request, and no other
client's records are lost or refused because of it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2

from spanmeter.receivers.ingest import OFF_LOOP_BYTES
from tests.conftest import RunningCollector, make_config, running_collector, writer_held
from tests.otlp_helpers import T0, json_request, llm_raw_attrs, llm_spans, raw_span, request_of, s

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def post(collector: RunningCollector, body: bytes, path: str = "/v1/traces") -> httpx.Response:
    return httpx.post(f"{collector.http_url}{path}", content=body, headers={"content-type": "application/json"},
                      timeout=30)


def span_ids(collector: RunningCollector) -> list[str]:
    return sorted(r.span_id for r in collector.records())


# --- values the store cannot hold ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"startTimeUnixNano": str(2**63)}, f"start_time_unix_nano is {2**63}, past the latest time stored"),
        ({"startTimeUnixNano": str(2**64 - 1)}, "start_time_unix_nano is 18446744073709551615, past the latest"),
    ],
)
def test_a_time_past_int64_is_rejected_by_name_and_the_rest_stored(
    collector: RunningCollector, fields: dict[str, Any], message: str
) -> None:
    response = post(collector, json_request([raw_span(1, llm_raw_attrs()), raw_span(2, llm_raw_attrs(), **fields)]))
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert message in partial["errorMessage"]
    assert span_ids(collector) == [f"{1:016x}"]


def test_a_span_event_time_past_int64_is_rejected_by_name(collector: RunningCollector) -> None:
    event = {"name": "e", "timeUnixNano": str(2**64 - 1), "attributes": [{"key": "usage.event.name", "value": s("x")}]}
    response = post(collector, json_request([raw_span(1, {}, events=[event]), raw_span(2, llm_raw_attrs())]))
    assert response.status_code == 200
    assert "events[0].time_unix_nano is 18446744073709551615" in response.json()["partialSuccess"]["errorMessage"]
    assert span_ids(collector) == [f"{2:016x}"]


def test_a_log_record_time_past_int64_is_rejected_by_name(collector: RunningCollector) -> None:
    def log(name: str, time: int) -> dict[str, Any]:
        return {"timeUnixNano": str(time), "attributes": [{"key": "usage.event.name", "value": s(name)}]}

    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [log("ok", T0), log("bad", 2**64 - 1)]}]}]})
    response = post(collector, body.encode(), "/v1/logs")
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedLogRecords"]) == 1
    assert "time_unix_nano is 18446744073709551615, past the latest time stored" in partial["errorMessage"]
    assert [r.type for r in collector.records()] == ["ok"]


# --- JSON nested past the parser's depth ----------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs", "/v1/metrics"])
def test_json_nested_a_thousand_levels_is_400(collector: RunningCollector, path: str) -> None:
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = post(collector, deep, path)
    assert response.status_code == 400
    assert response.json() == {"code": code_pb2.INVALID_ARGUMENT,
                               "message": "the JSON body is nested too deeply to be an OTLP request"}
    assert post(collector, json_request([raw_span(1, llm_raw_attrs())])).status_code == 200


# --- a request that can never fit -------------------------------------------------------------------

def test_a_request_yielding_more_records_than_the_queue_holds_is_413_without_retry(tmp_path: Path) -> None:
    config = make_config(tmp_path, storage={"sqlite": {"max_queued_records": 5}})
    events = [{"name": "e", "attributes": [{"key": "usage.event.name", "value": s("x")}]} for _ in range(6)]
    with running_collector(config) as collector:
        response = post(collector, json_request([raw_span(1, {}, events=events)]))
        assert response.status_code == 413
        assert "retry-after" not in response.headers
        message = response.json()["message"]
        assert "yields 6 usage records" in message and "max_queued_records: 5" in message
        assert "never be accepted" in message
        with grpc.insecure_channel(collector.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as error:
            channel.unary_unary(EXPORT)(request_of(llm_spans(6)).SerializeToString(), timeout=10)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "yields 6 usage records" in error.value.details()
        assert "google.rpc.retryinfo-bin" not in dict(error.value.trailing_metadata() or ())
        assert post(collector, json_request([raw_span(1, llm_raw_attrs())])).status_code == 200


# --- limits on what one record carries -------------------------------------------------------------

def test_meta_attributes_past_the_limit_reject_the_span(tmp_path: Path) -> None:
    config = make_config(tmp_path, processors={"usage": {"max_meta_keys": 3}})
    with running_collector(config) as collector:
        many = {f"usage.meta.k{n}": s("v") for n in range(4)}
        three = {f"usage.meta.k{n}": s("v") for n in range(3)}
        response = post(collector, json_request([raw_span(1, llm_raw_attrs(**many)), raw_span(2, llm_raw_attrs(**three))]))
        assert "4 usage.meta.* attributes; the limit is 3 per record" in response.json()["partialSuccess"]["errorMessage"]
        assert [r.meta for r in collector.records()] == [{"k0": "v", "k1": "v", "k2": "v"}]


@pytest.mark.parametrize("quantity", ["1e-999999999", "0.0000000000000000001"])
def test_a_quantity_with_too_many_decimal_places_is_rejected(collector: RunningCollector, quantity: str) -> None:
    meter = {"usage.meter": s("pages"), "usage.quantity": s(quantity)}
    ok = {"usage.meter": s("pages"), "usage.quantity": {"doubleValue": 1e-18}}
    response = post(collector, json_request([raw_span(1, meter), raw_span(2, ok)]))
    assert "usage.quantity has more than 18 digits after the decimal point" in response.json()["partialSuccess"]["errorMessage"]
    assert [str(r.quantity) for r in collector.records()] == ["1E-18"]
# --- a full queue ------------------------------------------------------------------------------------

def test_a_full_queue_is_503_before_the_body_is_even_read(tmp_path: Path) -> None:
    """Refused before decoding and converting (what would be 400 here is 503): a storm of requests
    the queue cannot take costs the collector next to nothing."""
    config = make_config(tmp_path, storage={"sqlite": {"max_queued_records": 2, "busy_timeout": 20}})
    with running_collector(config) as collector:
        waiting: list[httpx.Response] = []
        with writer_held(tmp_path / "spanmeter.db"):
            body = json_request([raw_span(1, llm_raw_attrs()), raw_span(2, llm_raw_attrs())])
            sender = threading.Thread(target=lambda: waiting.append(post(collector, body)))
            sender.start()
            while collector.collector.store.queued < 2:
                sender.join(0.01)
            for refused in (post(collector, json_request([raw_span(3, llm_raw_attrs())])), post(collector, b"{not json")):
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert "overloaded" in refused.json()["message"]
            with grpc.insecure_channel(collector.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as error:
                channel.unary_unary(EXPORT)(b"\xff not protobuf", timeout=10)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        sender.join(30)
        assert [r.status_code for r in waiting] == [200]
        assert span_ids(collector) == [f"{1:016x}", f"{2:016x}"]
        assert collector.metric("spanmeter_spans_received_total", {"transport": "http"}) == 2


# --- large requests ----------------------------------------------------------------------------------

def padded(span_id: int, pad: int) -> bytes:
    """One model-call span with a large attribute that is no usage (a prompt, say)."""
    return json_request([raw_span(span_id, llm_raw_attrs(**{"gen_ai.prompt": s("x" * pad)}))])


def test_large_requests_are_converted_off_the_event_loop_within_a_memory_budget(tmp_path: Path) -> None:
    assert OFF_LOOP_BYTES < 1_200_000
    config = make_config(tmp_path, receivers={"otlp": {"max_in_flight_bytes": 1_500_000}})
    with running_collector(config) as collector:
        ingest = collector.collector.ingest
        held = threading.Event()
        ingest._converter.submit(held.wait, 30)  # the converter thread is busy: large requests wait for it
        large: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: large.append(post(collector, padded(1, 1_200_000))))
        sender.start()
        while ingest._in_flight == 0:
            sender.join(0.01)
        # The large request is in hand, and the event loop answers everything else meanwhile.
        assert httpx.get(f"{collector.http_url}/healthz").status_code == 200
        assert post(collector, padded(2, 10)).status_code == 200
        over = post(collector, padded(3, 400_000))  # with the large one's bytes, past the budget
        assert over.status_code == 503
        assert over.headers["retry-after"] == "1"
        assert "max_in_flight_bytes" in over.json()["message"]
        held.set()
        sender.join(30)
        assert [r.status_code for r in large] == [200]
        assert span_ids(collector) == [f"{1:016x}", f"{2:016x}"]
        assert post(collector, padded(3, 400_000)).status_code == 200  # the budget is free again
