"""OpenLLMetry `opentelemetry-instrumentation-openai` / `-anthropic` on the real SDKs (traceloop-style
parents). The anthropic SDK's own tracing stays on unless ANTHROPIC_OPEN_TELEMETRY=false."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import main


def instrument(provider: TracerProvider) -> list[str]:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    AnthropicInstrumentor().instrument(tracer_provider=provider)
    return ["opentelemetry.instrumentation.openai.OpenAIInstrumentor",
            "opentelemetry.instrumentation.anthropic.AnthropicInstrumentor"]


if __name__ == "__main__":
    main(instrument, nested_style="traceloop")
