"""Connections that send nothing, or too slowly, are closed, and past the connection limit new ones
are closed at once: idle clients cannot take every file descriptor and lock others out."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.conftest import RunningCollector, make_config, running_collector
from tests.otlp_helpers import json_request, llm_raw_attrs, llm_spans, raw_span, request_of

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[RunningCollector]:
    limits = {"max_connections": 3, "header_timeout": 0.2, "body_timeout": 0.5}
    with running_collector(make_config(tmp_path, receivers={"otlp": limits})) as collector:
        yield collector


@contextmanager
def connection(port: int, send: bytes = b"") -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        if send:
            sock.sendall(send)
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (a socket timeout fails the test)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def closed_by_server(sock: socket.socket) -> bool:
    received(sock)  # whatever it sent first (gRPC's settings)
    return True


def http_works(collector: RunningCollector) -> bool:
    body = json_request([raw_span(1, llm_raw_attrs())])
    response = httpx.post(f"{collector.http_url}/v1/traces", content=body, headers={"content-type": "application/json"})
    return response.status_code == 200


def grpc_works(collector: RunningCollector) -> bool:
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        answer = channel.unary_unary(EXPORT)(request_of(llm_spans(1)).SerializeToString(), timeout=10)
    return not ExportTraceServiceResponse.FromString(answer).HasField("partial_success")


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/traces HTTP/1.1\r\nhost: x\r\n", b"POST /v1/traces HTTP/1.1\r\ncontent-length: 100\r\ncontent-type: application/json\r\n\r\n{"],
    ids=["nothing", "half a head", "half a body"],
)
def test_http_connections_that_stall_are_closed(limited: RunningCollector, sent: bytes) -> None:
    port = limited.collector.http_port
    assert port is not None
    with connection(port, sent) as idle:
        assert closed_by_server(idle)
    assert http_works(limited)


def test_http_connections_past_the_limit_are_closed_at_once(limited: RunningCollector) -> None:
    port = limited.collector.http_port
    assert port is not None
    with connection(port) as a, connection(port) as b, connection(port) as c:
        with connection(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n") as extra:
            assert received(extra) == b""  # closed unanswered
        for idle in (a, b, c):  # then the idle ones time out, and the port serves again
            assert closed_by_server(idle)
    assert http_works(limited)


def test_grpc_connections_that_never_handshake_are_closed_and_limited(limited: RunningCollector) -> None:
    port = limited.collector.grpc_port
    assert port is not None
    with connection(port) as a, connection(port) as b, connection(port) as c:
        with connection(port) as extra:
            assert received(extra) == b""  # closed before gRPC's settings frame
        for idle in (a, b, c):
            assert closed_by_server(idle)
    assert grpc_works(limited)
