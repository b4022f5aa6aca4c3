"""Wires the collector together: store, pricing, ingest, receivers; start and stop.

Lifecycle (as in the OTel Collector): `start` fails fast (bad port, unwritable database) and
logs where it listens; `stop` is safe without `start`: it stops accepting, lets in-flight
requests finish (their records are committed before they are answered), then closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator

import grpc
import uvicorn
from fastapi import FastAPI
from genai_prices.update_prices import DEFAULT_UPDATE_URL
from starlette.types import ASGIApp

import spanmeter
import spanmeter.api
from spanmeter.api import health
from spanmeter.api.auth_http import AuthMiddleware
from spanmeter.auth import Authenticator
from spanmeter.config import Config
from spanmeter.convert.spans import ConvertOptions
from spanmeter.errors import ListenError, StorageError
from spanmeter.exporters.runner import ExportRunner
from spanmeter.metrics import Metrics
from spanmeter.pricing import PriceOverride, Pricer, PriceRefresh
from spanmeter.receivers import http_limits, listen, otlp_grpc, otlp_http, rest
from spanmeter.receivers.grpc_auth import AuthInterceptor
from spanmeter.receivers.ingest import Ingest
from spanmeter.receivers.listen import listen_error
from spanmeter.store.factory import open_store
from spanmeter.store.port import Store

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0
FILES_BESIDES_CONNECTIONS = 256  # the database, its WAL, readers, exporters' clients, logs


def build_pricer(config: Config) -> Pricer:
    pricing = config.processors.pricing
    overrides = tuple(PriceOverride(**o.model_dump()) for o in pricing.overrides)
    return Pricer(
        overrides,
        use_bundled_prices=pricing.use_bundled_prices,
        reported_cost_wins=pricing.reported_cost_wins,
        reported_cost_tolerance=pricing.reported_cost_tolerance,
    )


def build_exporters(config: Config, store: Store, metrics: Metrics) -> list[ExportRunner]:
    return [ExportRunner.of(name, c, store, metrics, store) for name, c in config.active_exporters().items()]


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft limit of open files to what both receivers' connection limits need (as Go
    servers do at start): Linux's usual soft limit, 1024, is below 2 x 1000 connections."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    needed = 2 * max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < needed:
            log.warning(
                "open files are limited to %d, below the %d that receivers::otlp::max_connections (%d per protocol)"
                " needs: lower it, or raise the limit (ulimit -n)", raised, needed, max_connections,
            )


def freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's full passes, for the process's life.

    A full pass walks every tracked object, and the pydantic validators behind FastAPI and
    genai-prices make one take 40-60 ms here. Under load one ran every 2-3 s, stalling the event
    loop and the writer: most of the p99 export latency at half the maximum rate (bench/README.md).
    """
    gc.collect()
    gc.freeze()


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the CLI owns SIGINT/SIGTERM for the whole collector."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Collector:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = open_store(config)
        self.metrics.queue_depth.set_function(lambda: self.store.queued)
        self.metrics.storage_failing.set_function(lambda: self.store.failure is not None)
        self.authenticator = Authenticator(
            self.store, enabled=config.auth.enabled, default_workspace=config.service.workspace
        )
        usage = config.processors.usage
        options = ConvertOptions(
            workspace=config.service.workspace,
            count_operations=frozenset(op.lower() for op in usage.count_operations),
            max_field_chars=usage.max_field_chars,
            max_meta_keys=usage.max_meta_keys,
            content_capture=usage.content_capture,
            content_max_chars=usage.content_max_chars,
            exclusive_input_scopes=frozenset(usage.exclusive_input_scopes),
            provider_traced={
                scope: frozenset(p.lower() for p in providers) for scope, providers in usage.provider_traced.items()
            },
        )
        self.ingest = Ingest(
            self.store, build_pricer(config), options, self.metrics, config.otlp.max_in_flight_bytes
        )
        self.exporters = build_exporters(config, self.store, self.metrics)
        running = {runner.name for runner in self.exporters}
        self.metrics.watch_exporters(lambda: [s for s in self.store.exporter_states() if s.exporter in running])
        self.http_app, self.asgi_app = self._build_http_app()
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._ready = False
        refresh = config.processors.pricing.refresh
        self.price_refresh = PriceRefresh(update_interval=refresh.interval, url=refresh.url or DEFAULT_UPDATE_URL) if refresh.enabled else None

    def _build_http_app(self) -> tuple[FastAPI, ASGIApp]:
        """The FastAPI app (every route, the OpenAPI document) and what uvicorn serves: the same,
        with OTLP exports sent straight to their routes behind the auth middleware only."""
        app = FastAPI(
            title="spanmeter",
            version=spanmeter.__version__,
            description="OTLP/HTTP receiver and usage API of spanmeter.",
            # No /docs or /redoc: their pages load Swagger UI / ReDoc from a CDN, blank without
            # internet (a sidecar's usual case). /openapi.json stays: any OpenAPI viewer reads it.
            docs_url=None,
            redoc_url=None,
        )
        otlp_api_routes, otlp_routes = otlp_http.create_routes(self.ingest, self.config.otlp.max_request_bytes)
        app.include_router(otlp_api_routes)
        app.include_router(health.create_router(self.metrics, self._not_ready))
        spanmeter.api.install(app, self.store, self.config, self.metrics, self.authenticator)
        rest.install(app, self.ingest, self.store, self.config.otlp.max_request_bytes)
        otlp_app = AuthMiddleware(
            otlp_routes,
            authenticator=self.authenticator,
            public_workspace=self.config.api.adoption.public_workspace,
            metrics=self.metrics,
        )
        return app, otlp_http.OTLPFirst(otlp_app, app)

    def _limits(self) -> http_limits.ConnectionLimits:
        otlp = self.config.otlp
        return http_limits.ConnectionLimits(otlp.max_connections, otlp.header_timeout, otlp.body_timeout)

    def _not_ready(self) -> str | None:
        if not self._ready:
            return "starting or stopping"
        return self.store.failure

    async def start(self) -> None:
        """Start everything, or nothing: on a failure (a busy port) what had started is stopped
        again before the error is raised, so no server, thread or lease is left behind."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        otlp = self.config.otlp
        key = f"receivers::{next(iter(self.config.receivers))}::protocols::{{}}::endpoint"
        ensure_descriptors(otlp.max_connections)
        try:
            await self.store.start()
        except StorageError as error:
            raise StorageError(f"{error} ({self.config.storage.where_key} in the config)", error.reason) from None
        if self.price_refresh is not None:  # in the background: ingest never waits for the network
            self.price_refresh.start()
            log.info("price data refresh on: %s every %gs", self.price_refresh.url, self.price_refresh.update_interval)
        await self._register_exporters()
        if self.config.auth.enabled and not any(k.state == "active" for k in self.store.list_keys()):
            log.warning(
                "auth is on and no active API key exists: every request gets 401; create one with `spanmeter keys create`"
            )
        if otlp.protocols.grpc is not None:
            grpc_endpoint, grpc_key = otlp.protocols.grpc.endpoint, key.format("grpc")
            # A plain socket first: it tells why a port cannot be had (grpc says only "Failed to
            # bind", after logging a C-level error line).
            if otlp.protocols.grpc.port and (busy := listen.probe(otlp.protocols.grpc.host, otlp.protocols.grpc.port)):
                raise listen_error("OTLP/gRPC", grpc_endpoint, grpc_key, busy)
            interceptors = [AuthInterceptor(self.authenticator, self.metrics)] if self.config.auth.enabled else []
            server = otlp_grpc.create_server(
                self.ingest, otlp.max_request_bytes, interceptors, self._limits(), otlp.idle_timeout
            )
            try:
                self.grpc_port = server.add_insecure_port(grpc_endpoint)
            except RuntimeError:  # taken since the probe
                raise listen_error("OTLP/gRPC", grpc_endpoint, grpc_key, None) from None
            self._grpc = server
            await self._grpc.start()
            log.info("OTLP/gRPC listening on %s:%d", otlp.protocols.grpc.host, self.grpc_port)
        if otlp.protocols.http is not None:
            endpoint = otlp.protocols.http
            try:
                sock = listen.bind(endpoint.host, endpoint.port)
            except OSError as error:
                raise listen_error("OTLP/HTTP", endpoint.endpoint, key.format("http"), error) from None
            server_config = uvicorn.Config(
                self.asgi_app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=int(GRACE_SECONDS),
                # OTel SDKs export every 5 s by default, uvicorn's own idle timeout: a connection
                # closed just as the next export reuses it fails that export. Keep them longer.
                timeout_keep_alive=int(otlp.idle_timeout),
                http=http_limits.guarded(self._limits()),
            )
            self._http = _Uvicorn(server_config)
            self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
            while not self._http.started:
                if self._http_task.done():  # uvicorn logs the reason and exits the task
                    with contextlib.suppress(SystemExit):
                        self._http_task.result()
                    raise ListenError(f"OTLP/HTTP on {endpoint.endpoint} did not start (see the log above)")
                await asyncio.sleep(0.01)
            self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
            log.info("OTLP/HTTP listening on %s:%d", endpoint.host, self.http_port)
        for runner in self.exporters:
            runner.start()
        self._ready = True
        log.info("spanmeter %s started; storing records in %s", spanmeter.__version__, self.store.location)

    async def _register_exporters(self) -> None:
        """Give each exporter its outbox position before any record arrives (`start_at: now` counts
        from here)."""
        unused = set(self.config.exporters) - set(self.config.active_exporters())
        for name in sorted(unused):
            log.warning("exporter %s is configured but in no service::pipelines entry: it is not started", name)
        for runner in self.exporters:
            start_at = self.config.exporters[runner.name].start_at
            position = await asyncio.to_thread(self.store.register_exporter, runner.name, start_at)
            log.info("exporter %s: sends records after seq %d", runner.name, position)

    async def stop(self) -> None:
        self._ready = False
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(SystemExit):
                await self._http_task
        if self._grpc is not None:
            await self._grpc.stop(GRACE_SECONDS)
        for runner in self.exporters:  # records not sent yet stay pending in the store
            await runner.stop()
        self.ingest.close()
        if self.price_refresh is not None:
            self.price_refresh.stop()  # type: ignore[no-untyped-call]  # genai-prices leaves it unannotated
        await self.store.close()
        log.info("spanmeter stopped")

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set: the whole life of a `spanmeter serve` process."""
        await self.start()
        freeze_startup_objects()
        try:
            await stop.wait()
        finally:
            log.info("shutting down: finishing in-flight requests")
            await self.stop()
