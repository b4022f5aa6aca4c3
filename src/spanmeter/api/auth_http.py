"""API-key authentication for every HTTP route, as ASGI middleware.

Each request is classified by path: public (health, metrics, the OpenAPI document), public with
an optional key (adoption rows), read (other GETs) or ingest (everything else). The principal goes
to `request.state.principal` and its workspace into `spanmeter.auth.request_workspace()`, so ingest
handlers written without auth in mind still store records in the key's workspace.
Refusals: OTLP paths (/v1/...) answer a google.rpc.Status in the request's content type, as the
OTLP spec asks of errors; every other path answers `{"ok": false, "error": ...}`.
"""

from __future__ import annotations

from typing import Final

from google.rpc import code_pb2, status_pb2
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from spanmeter.api.errors import error_response
from spanmeter.auth import (
    Authenticator,
    AuthError,
    Principal,
    bind_request_workspace,
    key_from_headers,
    reset_request_workspace,
)
from spanmeter.errors import StorageError
from spanmeter.metrics import Metrics
from spanmeter.receivers.decode import CONTENT_TYPES, JSON, encode

PUBLIC_PATHS: Final = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json"}
)
# The dashboard's page and files hold no data (it calls the API with the user's key).
PUBLIC_PREFIXES: Final = ("/ui/",)
OPTIONAL_KEY_PREFIXES: Final = ("/api/v1/adoption", "/api/v1/agent-rank")
_READ_METHODS: Final = frozenset({"GET", "HEAD"})


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, public_workspace: str | None, metrics: Metrics
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.public_workspace = public_workspace
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"] == "/ui" or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        authorization = api_key = None
        for name, value in scope["headers"]:  # what Headers(scope).get does, without the object
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
        key = key_from_headers(authorization, api_key)
        path: str = scope["path"]
        try:
            if path.startswith(OPTIONAL_KEY_PREFIXES):
                principal: Principal = self.authenticator.optional(key, self.public_workspace)
            else:
                needed = "read" if scope["method"] in _READ_METHODS else "ingest"
                principal = self.authenticator.authenticate(key, needed)
        except AuthError as error:
            self.metrics.auth_failures.labels("forbidden" if error.status == 403 else "unauthenticated").inc()
            await _refuse(error, path, Headers(scope=scope))(scope, receive, send)
            return
        except StorageError as error:  # the keys cannot be read now (the database is down): retry
            message = f"cannot check the API key: {error}; retry later"
            await _answer(path, Headers(scope=scope), 503, code_pb2.UNAVAILABLE, message, {"Retry-After": "1"})(
                scope, receive, send
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        token = bind_request_workspace(principal.workspace if principal.key_id else None)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_request_workspace(token)


def _refuse(error: AuthError, path: str, headers: Headers) -> ASGIApp:
    extra = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    code = code_pb2.UNAUTHENTICATED if error.status == 401 else code_pb2.PERMISSION_DENIED
    return _answer(path, headers, error.status, code, error.message, extra)


def _answer(path: str, headers: Headers, status: int, code: int, message: str, extra: dict[str, str]) -> ASGIApp:
    """An error in the shape of `path`: an OTLP google.rpc.Status with `code` under /v1/, in
    the request's content type; the API's `{"ok": false, ...}` elsewhere."""
    if not path.startswith("/v1/"):
        return error_response(message, status, extra)
    from starlette.responses import Response

    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    media = content_type if content_type in CONTENT_TYPES else JSON
    body = encode(status_pb2.Status(code=code, message=message), media)
    return Response(body, status_code=status, media_type=media, headers=extra)
