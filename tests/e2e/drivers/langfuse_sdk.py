"""The Langfuse SDK's `langfuse.openai` drop-in on the real openai SDK. Langfuse traces through its
own OpenTelemetry span processor; it is pointed at spanmeter with its `span_exporter` option (as a
user sends Langfuse's spans to any OTLP endpoint)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import main


def instrument(provider: TracerProvider, exporter: Any) -> list[str]:
    from langfuse import Langfuse

    # No Langfuse server: its API client is never called by the drop-in (base_url refuses anyway).
    Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", base_url="http://127.0.0.1:9",
             tracer_provider=provider, span_exporter=exporter)
    import langfuse.openai  # noqa: F401 - patches the openai SDK's clients

    return ["langfuse.openai", "langfuse.Langfuse(span_exporter=OTLPSpanExporter)"]


if __name__ == "__main__":
    main(instrument, nested_style="otel", library_exports=True)
