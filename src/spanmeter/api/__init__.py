"""The HTTP API next to OTLP/HTTP: health and metrics, the usage query API, public adoption rows,
and the API-key middleware in front of every route."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from spanmeter import ui
from spanmeter.api import adoption, aggregate, attention, exporters, usage
from spanmeter.api.auth_http import AuthMiddleware
from spanmeter.api.errors import (
    ApiError,
    api_error_handler,
    http_error_handler,
    storage_error_handler,
    validation_error_handler,
)
from spanmeter.api.ratelimit import RateLimiter
from spanmeter.auth import Authenticator
from spanmeter.config import Config
from spanmeter.errors import StorageError
from spanmeter.metrics import Metrics
from spanmeter.store.port import AttentionCounts, Outbox, QueryStore


class ApiStore(QueryStore, Outbox, Protocol):
    """What the HTTP API reads: usage queries, and the exporters' outbox for their status."""


def install(
    app: FastAPI, store: ApiStore, config: Config, metrics: Metrics, authenticator: Authenticator
) -> None:
    """Add the query and adoption routes, their error handlers and the auth middleware to `app`."""
    settings = config.api.adoption
    app.include_router(usage.create_router(store))
    app.include_router(aggregate.create_router(store))
    if isinstance(store, AttentionCounts):
        app.include_router(attention.create_router(store))
    app.include_router(exporters.create_router(store.exporter_states, lambda: set(config.active_exporters())))
    app.include_router(ui.create_router())
    limiter = RateLimiter(settings.rate_limit.requests, settings.rate_limit.window_seconds)
    app.include_router(
        adoption.create_router(
            store, min_developers=settings.min_developers, limiter=limiter, metrics=metrics
        )
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(StorageError, storage_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(
        AuthMiddleware,
        authenticator=authenticator,
        public_workspace=settings.public_workspace,
        metrics=metrics,
    )
