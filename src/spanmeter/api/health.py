"""`/healthz` (the process is up), `/readyz` (it can take writes), `/metrics` (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from spanmeter.metrics import Metrics


def create_router(metrics: Metrics, not_ready: Callable[[], str | None]) -> APIRouter:
    """`not_ready()`: why the collector cannot take writes now (starting, stopping, the store
    failing: "storage write failed: disk full: ..."), or None when it can."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: the store accepts writes",
        responses={503: {"description": "not ready"}},
    )
    async def readyz() -> JSONResponse:
        reason = not_ready()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:  # in the thread pool: the exporters' gauges read the store
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
