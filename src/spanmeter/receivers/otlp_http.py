"""OTLP/HTTP receiver: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` with protobuf or JSON bodies,
optionally gzip.

Follows the OTLP/HTTP specification: the response has the request's content type; errors carry
a `google.rpc.Status`; 400 for a malformed body, 413 over the size limit (checked on the wire and
again after decompression), 415 for other content types, 503 with `Retry-After` when the store
cannot take more.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from google.rpc import code_pb2, status_pb2
from starlette.types import ASGIApp, Receive, Scope, Send

from spanmeter.receivers.decode import CONTENT_TYPES, JSON, BadRequest, TooLarge, encode, gunzip
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


def create_routes(ingest: Ingest, max_request_bytes: int) -> tuple[APIRouter, OTLPEndpoints]:
    """The export endpoints twice: as FastAPI routes (documented in the OpenAPI document) and as
    bare ASGI endpoints by path, which `OTLPFirst` serves without FastAPI's middleware, Starlette's
    routing, or request and response objects (about a third of a 1-span request's time)."""
    api_router = APIRouter(tags=["otlp"])
    endpoints: dict[str, ASGIApp] = {}
    for signal in SIGNALS:
        endpoint = OTLPExport(signal, ingest, max_request_bytes)
        api_router.add_api_route(
            signal.http_path,
            endpoint.handle,
            methods=["POST"],
            openapi_extra=_otlp_body(signal),
            summary=f"OTLP/HTTP {signal.name} export",
            response_class=Response,
        )
        endpoints[signal.http_path] = endpoint
    return api_router, OTLPEndpoints(endpoints)


class OTLPEndpoints:
    """`POST /v1/<signal>` → its endpoint (OTLPFirst sends only those here)."""

    def __init__(self, endpoints: dict[str, ASGIApp]) -> None:
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoints[scope["path"]](scope, receive, send)


Answer = tuple[int, bytes, str, list[tuple[bytes, bytes]]]  # status, body, media type, extra headers


class OTLPExport:
    """One signal's `POST /v1/<signal>`: a bare ASGI app, and `handle` for FastAPI's routes."""

    def __init__(self, signal: Signal, ingest: Ingest, max_request_bytes: int) -> None:
        self.ingest = ingest
        self.signal = signal.name
        self.limit = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {name: value.decode("latin-1") for name, value in scope["headers"]}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Refusal("invalid", "the client closed the connection before the body ended")
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        status, body, media, extra = await self.answer(headers.get(b"content-type", ""), headers, chunks())
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media.encode()), (b"content-length", str(len(body)).encode()), *extra
            ],
        })
        await send({"type": "http.response.body", "body": body})

    async def handle(self, request: Request) -> Response:
        headers = {name.encode("latin-1"): value for name, value in request.headers.items()}
        status, body, media, extra = await self.answer(request.headers.get("content-type", ""), headers, request.stream())
        return Response(body, status_code=status, media_type=media, headers={k.decode(): v.decode() for k, v in extra})

    async def answer(self, content_type: str, headers: dict[bytes, str], body: AsyncIterator[bytes]) -> Answer:
        content_type = content_type.split(";")[0].strip().lower()
        try:
            if content_type not in CONTENT_TYPES:
                raise Refusal(
                    "unsupported_media",
                    f"unsupported content type {content_type or '(none)'!r}; use application/x-protobuf or application/json",
                )
            if self.signal != "metrics":
                self.ingest.check_room()  # before reading the body
            raw = await read_body(headers, body, self.limit)
            response = await self.ingest.receive(self.signal, raw, content_type, "http")
        except Refusal as refusal:
            return refusal_answer(refusal, content_type)
        except BadRequest as error:
            return refusal_answer(Refusal("invalid", str(error)), content_type)
        except TooLarge as error:
            return refusal_answer(Refusal("too_large", str(error)), content_type)
        return 200, encode(response, content_type), content_type, []


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


async def read_body(headers: dict[bytes, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, decompressed, refusing more than `limit` bytes at any stage.
    `headers`: lower-case header names as bytes (as ASGI gives them) to their values."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes, over the limit of {limit} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        parts.append(chunk)
    body = b"".join(parts)
    encoding = headers.get(b"content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        return gunzip(body, limit)
    if encoding not in ("identity", ""):
        raise Refusal("unsupported_media", f"unsupported content encoding {encoding!r}; use gzip or none")
    return body


def refusal_answer(refusal: Refusal, content_type: str) -> Answer:
    media = content_type if content_type in CONTENT_TYPES else JSON
    code = int(getattr(code_pb2, GRPC_CODES[refusal.kind]))
    status = status_pb2.Status(code=code, message=refusal.message)
    extra = []
    if refusal.retry_after is not None:
        extra.append((b"retry-after", str(max(1, math.ceil(refusal.retry_after))).encode()))
    return HTTP_STATUS[refusal.kind], encode(status, media), media, extra
