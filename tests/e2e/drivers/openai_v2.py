"""The official `opentelemetry-instrumentation-openai-v2` on the real `openai` SDK (plain OTel parents)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import main


def instrument(provider: TracerProvider) -> list[str]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return ["opentelemetry.instrumentation.openai_v2.OpenAIInstrumentor"]


if __name__ == "__main__":
    main(instrument, nested_style="otel")
