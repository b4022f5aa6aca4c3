"""The `google-genai` SDK (Gemini API) under `opentelemetry-instrumentation-google-genai`, against the
fake provider's Gemini endpoint. Suite `gemini`: generate_content, its stream, and failed calls."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import CALL_MODELS, Call, main


def instrument(provider: TracerProvider) -> list[str]:
    from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

    GoogleGenAiSdkInstrumentor().instrument(tracer_provider=provider)
    return ["opentelemetry.instrumentation.google_genai.GoogleGenAiSdkInstrumentor"]


def gemini_calls(fake_url: str) -> list[Call]:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url=fake_url, retry_options=types.HttpRetryOptions(attempts=1)))
    config = types.GenerateContentConfig(system_instruction="You are terse.", temperature=0.2, max_output_tokens=100)

    def generate(label: str) -> Any:
        return lambda: client.models.generate_content(model=CALL_MODELS[label], contents="Say hi.", config=config).text

    def stream(label: str) -> Any:
        return lambda: "".join(c.text or "" for c in client.models.generate_content_stream(
            model=CALL_MODELS[label], contents="Say hi.", config=config))

    return [("gemini.generate", generate("gemini.generate")),
            ("gemini.generate_stream", stream("gemini.generate_stream")),
            ("gemini.generate.error", generate("gemini.generate.error")),
            ("gemini.generate.error_429", generate("gemini.generate.error_429")),
            ("gemini.generate_stream.error_500", stream("gemini.generate_stream.error_500"))]


if __name__ == "__main__":
    main(instrument, nested_style="otel", suites={"gemini": gemini_calls})
