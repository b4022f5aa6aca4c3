"""One error shape for the HTTP API: `{"ok": false, "error": "<message>"}` (docs/api.md, "Errors").

FastAPI answers invalid query parameters with 422 and its own body; under /api/ we answer 400
with a message that names the parameter. An unknown path (404) or method (405) gets the same
shape, with a message saying what exists, instead of FastAPI's `{"detail": ...}`.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal

from fastapi import Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from spanmeter.errors import Overloaded, StorageError


class ErrorBody(BaseModel):
    ok: Literal[False] = False
    error: str = Field(description="what was wrong, and how to fix it")


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}


def error_response(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status, headers=headers)


# OpenAPI `responses` for the query endpoints. Declaring "4XX" also keeps FastAPI from
# documenting a 422 that these endpoints never send.
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "invalid parameter (the message names it)"},
    401: {
        "model": ErrorBody,
        "description": "Missing API key / Invalid API key / Revoked API key / Inactive API key",
    },
    403: {"model": ErrorBody, "description": "the API key lacks the needed scope"},
    "4XX": {"model": ErrorBody, "description": "other client errors"},
    503: {"model": ErrorBody, "description": "the database cannot answer now; retry after Retry-After seconds"},
}


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.message, exc.status, exc.headers)


async def storage_error_handler(request: Request, exc: Exception) -> Response:
    """503 with a retry delay: the database cannot answer now (PostgreSQL unreachable, say)."""
    assert isinstance(exc, StorageError)
    retry_after = exc.retry_after if isinstance(exc, Overloaded) else 1.0
    return error_response(f"{exc}; retry later", 503, {"Retry-After": str(max(1, math.ceil(retry_after)))})


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """404, 405 and the framework's other HTTP errors, in the API's error shape."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        message = f"no such path: {path}; the API's paths are listed in /openapi.json"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {path}; allowed: {allowed}"
    else:
        message = str(exc.detail)
    return error_response(message, exc.status_code, dict(exc.headers) if exc.headers else None)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith("/api/"):
        return await request_validation_exception_handler(request, exc)
    return error_response(describe_validation(exc), 400)


def describe_validation(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "header", "body")]
        name = ".".join(loc) or "request"
        message = error.get("msg", "invalid value")
        if error.get("type") == "string_pattern_mismatch":  # the pattern alone says little to a person
            pattern = error.get("ctx", {}).get("pattern", "")
            message = (
                f"{error.get('input')!r} does not match {pattern} (see its description in /openapi.json)"
            )
        problems.append(f"{name}: {message}")
    return "; ".join(problems)
