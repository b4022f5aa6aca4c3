"""OTLP/HTTP receiver: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` with protobuf or JSON bodies,
optionally gzip.

Follows the OTLP/HTTP specification: the response has the request's content type; errors carry
a `google.rpc.Status`; 400 for a malformed body, 413 over the size limit (checked on the wire and
again after decompression), 415 for other content types, 503 with `Retry-After` when the store
cannot take more.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from google.rpc import code_pb2, status_pb2
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from spanmeter.receivers.decode import CONTENT_TYPES, JSON, BadRequest, TooLarge, decode, encode, gunzip
from spanmeter.receivers.ingest import GRPC_CODES, HTTP_STATUS, Ingest, Refusal
from spanmeter.receivers.signals import SIGNALS, Signal


def _otlp_body(signal: Signal) -> dict[str, Any]:
    name = signal.request_type.DESCRIPTOR.name
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary", "description": name}},
                "application/json": {"schema": {"type": "object", "description": f"OTLP/JSON {name}"}},
            },
        },
        "responses": {
            "200": {"description": "accepted; partial_success lists what was rejected and why"},
            "400": {"description": "malformed body (google.rpc.Status)"},
            "413": {"description": "body over the size limit"},
            "415": {"description": "unsupported content type"},
            "503": {"description": "overloaded; retry after Retry-After seconds"},
        },
    }


def create_routes(ingest: Ingest, max_request_bytes: int) -> tuple[APIRouter, Router]:
    """The export handlers twice: as FastAPI routes (documented in the OpenAPI document) and as a
    plain Starlette router, which `OTLPFirst` serves them from without FastAPI's middleware."""
    api_router = APIRouter(tags=["otlp"])
    routes = []
    for signal in SIGNALS:
        handler = _export(signal, ingest, max_request_bytes)
        api_router.add_api_route(
            signal.http_path,
            handler,
            methods=["POST"],
            openapi_extra=_otlp_body(signal),
            summary=f"OTLP/HTTP {signal.name} export",
            response_class=Response,
        )
        routes.append(Route(signal.http_path, handler, methods=["POST"]))
    return api_router, Router(routes=routes)


def _export(signal: Signal, ingest: Ingest, max_request_bytes: int) -> Callable[[Request], Awaitable[Response]]:
    export = signal.handler(ingest)

    async def handle(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type not in CONTENT_TYPES:
                raise Refusal(
                    "unsupported_media",
                    f"unsupported content type {content_type or '(none)'!r}; use application/x-protobuf or application/json",
                )
            body = await read_body(request, max_request_bytes)
            response = await export(decode(body, content_type, signal.request_type), "http")
        except Refusal as refusal:
            return refusal_response(refusal, content_type)
        except BadRequest as error:
            return refusal_response(Refusal("invalid", str(error)), content_type)
        except TooLarge as error:
            return refusal_response(Refusal("too_large", str(error)), content_type)
        return Response(encode(response, content_type), media_type=content_type)

    return handle


class OTLPFirst:
    """Sends OTLP exports (the hot path) straight to `otlp`, past the API's routing and error
    middleware; every other request goes to `api`."""

    PATHS: Final = frozenset(signal.http_path for signal in SIGNALS)

    def __init__(self, otlp: ASGIApp, api: ASGIApp) -> None:
        self.otlp = otlp
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.PATHS:
            await self.otlp(scope, receive, send)
        else:
            await self.api(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed, refusing more than `limit` bytes at any stage."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes, over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        return gunzip(body, limit)
    if encoding not in ("identity", ""):
        raise Refusal("unsupported_media", f"unsupported content encoding {encoding!r}; use gzip or none")
    return body


def refusal_response(refusal: Refusal, content_type: str) -> Response:
    media = content_type if content_type in CONTENT_TYPES else JSON
    code = int(getattr(code_pb2, GRPC_CODES[refusal.kind]))
    status = status_pb2.Status(code=code, message=refusal.message)
    headers = {}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(refusal.retry_after)))
    return Response(encode(status, media), status_code=HTTP_STATUS[refusal.kind], media_type=media, headers=headers)

