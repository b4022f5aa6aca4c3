"""API-key authentication for OTLP/gRPC: a server interceptor over every service.

Keys come as metadata, `authorization: Bearer <key>` or `x-api-key: <key>` (what OTel SDKs send
with OTEL_EXPORTER_OTLP_HEADERS). A refused call ends with UNAUTHENTICATED (or PERMISSION_DENIED
for a key without the ingest scope) and the same messages as HTTP. An accepted call runs with the
key's workspace bound (`spanmeter.auth.request_workspace`), so its records land there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc

from spanmeter.auth import (
    Authenticator,
    AuthError,
    bind_request_workspace,
    key_from_headers,
    reset_request_workspace,
)
from spanmeter.errors import StorageError
from spanmeter.metrics import Metrics

if TYPE_CHECKING:  # generic only in the stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, metrics: Metrics) -> None:
        self.authenticator = authenticator
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        key = key_from_headers(_text(metadata.get("authorization")), _text(metadata.get("x-api-key")))
        try:
            principal = self.authenticator.authenticate(key, "ingest")
        except AuthError as error:
            self.metrics.auth_failures.labels("forbidden" if error.status == 403 else "unauthenticated").inc()
            code = grpc.StatusCode.UNAUTHENTICATED if error.status == 401 else grpc.StatusCode.PERMISSION_DENIED
            return _refusal(code, error.message)
        except StorageError as error:  # the keys cannot be read now (the database is down): retry
            return _refusal(grpc.StatusCode.UNAVAILABLE, f"cannot check the API key: {error}; retry later")
        handler = await continuation(handler_call_details)
        if handler is None or principal.key_id is None or handler.unary_unary is None:
            return handler
        return _bound(handler, principal.workspace)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _refusal(code: grpc.StatusCode, message: str) -> Handler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


def _bound(handler: Handler, workspace: str) -> Handler:
    """The same unary handler, run with `workspace` bound for its records."""
    inner = cast(Callable[[Any, Any], Awaitable[Any]], handler.unary_unary)  # an aio handler: a coroutine

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        token = bind_request_workspace(workspace)
        try:
            return await inner(request, context)
        finally:
            reset_request_workspace(token)

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
