"""OTLP/gRPC receiver: the Trace, Logs and Metrics services' Export on a grpc.aio server in the
collector's event loop.

The handler takes the raw request bytes and decodes them with the same `decode` as OTLP/HTTP, so
a malformed message is INVALID_ARGUMENT with a message (gRPC's own deserializer would answer
INTERNAL). gRPC enforces the size limit itself, after decompression, with RESOURCE_EXHAUSTED.
UNAVAILABLE carries a RetryInfo both where the OTel SDK looks for it (`google.rpc.retryinfo-bin`)
and in the standard `grpc-status-details-bin`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2

from spanmeter.receivers.decode import PROTOBUF, BadRequest
from spanmeter.receivers.http_limits import ConnectionLimits
from spanmeter.receivers.ingest import GRPC_CODES, Ingest, Refusal
from spanmeter.receivers.signals import SIGNALS, Signal

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 60
KEEPALIVE_TIMEOUT_SECONDS = 20


async def abort(context: grpc.aio.ServicerContext[Any, Any], refusal: Refusal) -> None:
    code = getattr(grpc.StatusCode, GRPC_CODES[refusal.kind])
    metadata: list[tuple[str, bytes]] = []
    if refusal.retry_after is not None:
        delay = Duration()
        delay.FromNanoseconds(int(refusal.retry_after * 1e9))
        retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
        status = status_pb2.Status(code=getattr(code_pb2, GRPC_CODES[refusal.kind]), message=refusal.message)
        status.details.add().Pack(retry_info)
        metadata = [
            ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()),
        ]
    await context.abort(code, refusal.message, trailing_metadata=tuple(metadata))


def create_server(
    ingest: Ingest,
    max_request_bytes: int,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    limits: ConnectionLimits | None = None,
    idle_timeout: float = 65.0,
) -> grpc.aio.Server:
    """`limits`: connections at most, and the handshake's timeout (header_timeout); a connection
    that never sends gRPC's preface is closed then, one without calls after `idle_timeout`."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_request_bytes),
        # grpc sets SO_REUSEPORT by default: a second collector on the same port would start
        # and take half the exports. Off, a busy port fails at start (receivers/listen.py).
        ("grpc.so_reuseport", 0),
    ]
    if limits is not None:
        options += [
            ("grpc.max_allowed_incoming_connections", limits.max_connections),
            ("grpc.server_handshake_timeout_ms", int(limits.header_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(idle_timeout * 1000)),
            # Pings find peers gone without a word (a NAT dropped them) and free their connections.
            ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
        ]
    server = grpc.aio.server(options=options, interceptors=list(interceptors))
    for signal in SIGNALS:
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(_export(signal, ingest))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(signal.grpc_service, {"Export": handler}),))
    return server


def _export(signal: Signal, ingest: Ingest) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
    async def handle(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            response = await ingest.receive(signal.name, body, PROTOBUF, "grpc")
        except BadRequest as error:
            await abort(context, Refusal("invalid", str(error)))
            raise
        except Refusal as refusal:
            await abort(context, refusal)
            raise
        return response.SerializeToString()

    return handle
