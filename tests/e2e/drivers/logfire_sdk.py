"""Pydantic Logfire's `instrument_openai()` / `instrument_anthropic()` on the real SDKs, its spans sent
to spanmeter through `logfire.configure(send_to_logfire=False, additional_span_processors=[...])`
(Logfire's documented way to another OTLP backend)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.e2e.drivers.common import FLUSH_HOOKS, main


def instrument(provider: TracerProvider, exporter: Any) -> list[str]:
    import logfire

    # `provider` holds the driver's in-memory copy (its report); Logfire has its own provider.
    logfire.configure(send_to_logfire=False, console=False, service_name=str(provider.resource.attributes["service.name"]),
                      additional_span_processors=[BatchSpanProcessor(exporter, schedule_delay_millis=200),
                                                  provider._active_span_processor])
    logfire.instrument_openai()
    logfire.instrument_anthropic()
    FLUSH_HOOKS.append(lambda: logfire.force_flush(15_000))
    return ["logfire.instrument_openai", "logfire.instrument_anthropic"]


if __name__ == "__main__":
    main(instrument, nested_style="otel", library_exports=True)
