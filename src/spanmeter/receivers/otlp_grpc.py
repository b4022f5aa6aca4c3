"""OTLP/gRPC receiver: TraceService/Export on a grpc.aio server in the collector's event loop.

gRPC itself enforces the size limit (after decompression) with RESOURCE_EXHAUSTED. Refusals of the
ingest path map through `GRPC_CODES`; UNAVAILABLE carries a RetryInfo both where the OTel SDK
looks for it (`google.rpc.retryinfo-bin`) and in the standard `grpc-status-details-bin`.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from spanmeter.receivers.ingest import GRPC_CODES, Ingest, Refusal

log = logging.getLogger(__name__)


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(  # noqa: N802 - the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        try:
            return await self.ingest.export_traces(request, "grpc")
        except Refusal as refusal:
            await abort(context, refusal)
            raise AssertionError("unreachable") from None


async def abort(context: grpc.aio.ServicerContext, refusal: Refusal) -> None:
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


def create_server(ingest: Ingest, max_request_bytes: int) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(ingest), server)
    return server
