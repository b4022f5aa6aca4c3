"""`/healthz` (the process is up), `/readyz` (it can take writes), `/metrics` (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from spanmeter.metrics import Metrics


def create_router(metrics: Metrics, ready: Callable[[], bool]) -> APIRouter:
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
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:  # in the thread pool: the exporters' gauges read the store
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
