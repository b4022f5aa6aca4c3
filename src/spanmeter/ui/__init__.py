"""The dashboard at `/ui`: static files served by the collector itself (no build step, no CDN).

The page holds no data: it reads the query API from the browser (usage series, snapshot,
aggregates, records, `/api/v1/exporters`, `/metrics`) and, with auth on, sends the read key the
user types as an `Authorization` header, never in a URL. Charts are hand-drawn SVG.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The page loads only its own files and talks only to this collector.
_HEADERS: Final = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _file(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _TYPES or "/" in name or name.startswith("."):
        raise HTTPException(404)
    found = resources.files("spanmeter.ui").joinpath("static", name)
    if not found.is_file():
        raise HTTPException(404)
    return Response(found.read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


def create_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/ui")
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @router.get("/ui/")
    def index() -> Response:
        return _file("index.html")

    @router.get("/ui/{name}")
    def static_file(name: str) -> Response:
        return _file(name)

    return router
