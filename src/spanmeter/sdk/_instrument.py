"""Zero-code: the `opentelemetry_post_instrument` entry point of `opentelemetry-instrument`.

`opentelemetry-instrument python app.py` sets up the SDK through the installed configurator
(opentelemetry-distro's, from the OTEL_* variables), instruments the installed libraries, then
calls every `opentelemetry_post_instrument` hook: spanmeter's adds UsageSpanProcessor to the
global tracer provider, so `usage_context` works with no call to `configure()`.
`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=spanmeter` turns the hook off.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from spanmeter.sdk._processor import add_usage_processor

log = logging.getLogger(__name__)

ENTRY_POINT_NAME = "spanmeter"


def post_instrument() -> None:
    disabled = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    if ENTRY_POINT_NAME in {name.strip() for name in disabled.split(",")}:
        return
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        add_usage_processor(provider)
    else:
        log.warning("spanmeter: no OpenTelemetry SDK tracer provider after auto-instrumentation, so spans get no "
                    "usage context; install opentelemetry-distro (or another distro) and set OTEL_TRACES_EXPORTER")
