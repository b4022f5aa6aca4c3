"""configure(): the app's tracer provider, exporting to spanmeter over OTLP/HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from spanmeter.sdk._processor import add_usage_processor

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"


def configure(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> TracerProvider:
    """Send this process's spans to spanmeter; returns the tracer provider.

    endpoint: spanmeter's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (`/v1/traces` is added);
    None: the standard variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT,
    else http://localhost:4318). headers: e.g. {"authorization": "Bearer sm_..."} when spanmeter
    requires API keys (None: OTEL_EXPORTER_OTLP_HEADERS). service_name: the resource's
    `service.name` (None: OTEL_SERVICE_NAME).

    With no SDK tracer provider set yet, makes one and sets it as the global provider; with one
    set (by your code or another library), adds to it, keeping its resource. Either way the
    provider gets a UsageSpanProcessor (once) and a BatchSpanProcessor exporting to spanmeter.
    Call it once, before the instrumented code runs.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # the `sdk` extra

    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), headers=dict(headers) if headers else None,
                                timeout=timeout)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
        if service_name is not None and current.resource.attributes.get(SERVICE_NAME) != service_name:
            log.warning("spanmeter.sdk.configure: a tracer provider is already set; its service.name %r is kept "
                        "(service_name=%r is not used)", current.resource.attributes.get(SERVICE_NAME), service_name)
    elif isinstance(current, trace.ProxyTracerProvider):
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name} if service_name else {}))
        trace.set_tracer_provider(provider)
    else:
        raise TypeError(
            f"the global tracer provider is a {type(current).__module__}.{type(current).__name__}, not the "
            "OpenTelemetry SDK's: add spanmeter.sdk.UsageSpanProcessor() and an OTLP exporter to it yourself"
        )
    add_usage_processor(provider)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def traces_url(endpoint: str | None) -> str | None:
    """The OTLP/HTTP traces URL of a base endpoint (None stays None: the exporter reads the env)."""
    if endpoint is None:
        return None
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint must be an http:// or https:// URL such as http://127.0.0.1:4318; got {endpoint!r}")
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH
