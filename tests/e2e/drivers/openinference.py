"""OpenInference `openinference-instrumentation-openai` / `-anthropic` on the real SDKs
(OpenInference-style AGENT/CHAIN parents). OPENINFERENCE_ENABLE_GENAI_SEMCONV=true adds gen_ai.*."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import main


def instrument(provider: TracerProvider) -> list[str]:
    from openinference.instrumentation.anthropic import AnthropicInstrumentor
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    AnthropicInstrumentor().instrument(tracer_provider=provider)
    return ["openinference.instrumentation.openai.OpenAIInstrumentor",
            "openinference.instrumentation.anthropic.AnthropicInstrumentor"]


if __name__ == "__main__":
    main(instrument, nested_style="openinference")
