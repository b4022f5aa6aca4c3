"""The PostgreSQL server restarts while spans arrive: nothing acknowledged is lost, refused
requests succeed when sent again, and the collector recovers without a restart of its own."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import code_pb2

from spanmeter.auth import new_key
from spanmeter.store.base import RecordFilter
from tests.conftest import make_config, running_collector
from tests.exporters.harness import wait_for
from tests.otlp_helpers import json_request, llm_raw_attrs, llm_spans, raw_span, request_of
from tests.postgres_server import PostgresServer

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def test_a_database_restart_during_ingest_loses_nothing_acknowledged(tmp_path: Path, postgres: PostgresServer) -> None:
    config = make_config(tmp_path, storage={"postgres": {"dsn": postgres.new_database(), "connect_timeout": 1}})
    with running_collector(config) as collector:
        url = collector.http_url
        acknowledged: set[str] = set()
        refusals: list[httpx.Response] = []
        stop = threading.Event()

        def send(worker: int) -> None:
            with httpx.Client(timeout=10) as client:
                batch = 0
                while not stop.is_set():
                    ids = [(worker << 40) | (batch << 8) | n for n in range(1, 21)]
                    body = json_request([raw_span(span_id, llm_raw_attrs()) for span_id in ids])
                    while True:  # as an OTLP exporter does: the same request again after a refusal
                        response = client.post(f"{url}/v1/traces", content=body,
                                               headers={"content-type": "application/json"})
                        if response.status_code == 200:
                            acknowledged.update(f"{span_id:016x}" for span_id in ids)
                            break
                        refusals.append(response)
                        stop.wait(0.05)  # a client would wait Retry-After; the test need not
                    batch += 1

        senders = [threading.Thread(target=send, args=(w,)) for w in range(1, 4)]
        for thread in senders:
            thread.start()
        try:
            wait_for(lambda: len(acknowledged) >= 300, what="records before the restart")
            postgres.stop()
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 503, what="/readyz not ready")
            wait_for(lambda: len(refusals) >= 3, what="refused requests")
            postgres.start()
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="/readyz ready again")
            before = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= before + 300, what="records after the restart")
        finally:
            stop.set()
            for thread in senders:
                thread.join(30)
        assert {r.status_code for r in refusals} == {503}
        assert all(r.headers.get("retry-after") for r in refusals)
        assert "unavailable" in refusals[0].text
        stored = [r.span_id for r in collector.records(limit=1_000_000)]
        assert len(stored) == len(set(stored))
        assert acknowledged <= set(stored), f"{len(acknowledged - set(stored))} acknowledged records lost"
        assert collector.collector.store.recent(RecordFilter(), 1)  # reads work again too


def test_while_the_database_is_down_keys_and_reads_answer_503_and_recover(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """With API keys on, every request reads the keys: while PostgreSQL is down, OTLP over HTTP
    and gRPC and the query API answer 503 / UNAVAILABLE with a retry delay (not a server error),
    and the same requests succeed once it is back."""
    config = make_config(
        tmp_path, storage={"postgres": {"dsn": postgres.new_database(), "connect_timeout": 1}}, auth={"enabled": True}
    )
    with running_collector(config) as collector:
        secret, key = new_key("default", "test", ("ingest", "read"))
        collector.collector.store.create_key(key)
        auth = {"authorization": f"Bearer {secret}"}
        url = collector.http_url

        def send(span_id: int) -> httpx.Response:
            body = json_request([raw_span(span_id, llm_raw_attrs())])
            return httpx.post(f"{url}/v1/traces", content=body, headers={"content-type": "application/json", **auth})

        grpc_body = request_of(llm_spans(1)).SerializeToString()

        def export_grpc() -> None:
            with grpc.insecure_channel(collector.grpc_endpoint) as channel:
                channel.unary_unary(EXPORT)(grpc_body, timeout=10, metadata=tuple(auth.items()))

        def records() -> httpx.Response:
            return httpx.get(f"{url}/api/v1/usage/records", headers=auth, timeout=30)

        assert send(1).status_code == 200
        postgres.stop()
        try:
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 503, what="/readyz not ready")
            refused = send(2)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            status = json.loads(refused.text)
            assert status["code"] == code_pb2.UNAVAILABLE
            assert "cannot check the API key" in status["message"] and "unavailable" in status["message"]
            with pytest.raises(grpc.RpcError) as error:
                export_grpc()
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "cannot check the API key" in (error.value.details() or "")
            read = records()
            assert read.status_code == 503, read.text
            assert read.headers["retry-after"] == "1"
            assert read.json()["ok"] is False and "storage read failed" in read.json()["error"]
        finally:
            postgres.start()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="/readyz ready again")
        again = send(2)
        assert again.status_code == 200, again.text  # the refused requests, sent again
        export_grpc()
        read = records()
        assert read.status_code == 200, read.text
        assert len(read.json()["items"]) == 3  # one by HTTP before, and the two refused ones
