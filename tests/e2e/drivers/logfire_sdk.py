"""Pydantic Logfire's `instrument_openai()` / `instrument_anthropic()` on the real SDKs, its spans sent
to spanmeter through `logfire.configure(send_to_logfire=False, additional_span_processors=[...])`
(Logfire's documented way to another OTLP backend).

Suite `partial`: streams that end early — the app closes them after the first chunk (OpenAI and
Anthropic, each with usage asked for) or before reading anything (OpenAI), or the provider breaks
them after the first content chunk with an in-stream error (OpenAI and Anthropic)."""

from __future__ import annotations

import gc
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.e2e.drivers.common import CALL_MODELS, FLUSH_HOOKS, Call, main


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


def partial_calls(fake_url: str) -> list[Call]:
    import anthropic
    import openai

    client = openai.OpenAI(base_url=f"{fake_url}/v1", api_key="sk-test", max_retries=0)
    claude = anthropic.Anthropic(base_url=fake_url, api_key="sk-ant-test", max_retries=0)
    msgs: Any = [{"role": "user", "content": "Say hi."}]

    def openai_stream(label: str, read: int) -> Any:
        stream = client.chat.completions.create(model=CALL_MODELS[label], messages=msgs, stream=True,
                                                stream_options={"include_usage": True})
        chunks = iter(stream)
        first = [next(chunks).id for _ in range(read)]
        stream.close()
        del chunks, stream
        gc.collect()  # Logfire ends its `streaming response` span when its iterator is finalised
        return first

    def anthropic_stream() -> Any:
        stream = claude.messages.create(model=CALL_MODELS["anthropic.messages.stream_partial"], max_tokens=100,
                                        messages=msgs, stream=True)
        first = next(iter(stream)).type
        stream.close()
        gc.collect()
        return first

    def broken_stream(label: str) -> Any:
        if label.startswith("openai"):
            chunks: Any = client.chat.completions.create(model=CALL_MODELS[label], messages=msgs, stream=True,
                                                         stream_options={"include_usage": True})
        else:
            chunks = claude.messages.create(model=CALL_MODELS[label], max_tokens=100, messages=msgs, stream=True)
        try:
            return [type(c).__name__ for c in chunks]  # raises at the error
        finally:
            del chunks
            gc.collect()

    return [
        ("openai.chat.stream.error_midstream", lambda: broken_stream("openai.chat.stream.error_midstream")),
        ("anthropic.messages.stream.error_midstream", lambda: broken_stream("anthropic.messages.stream.error_midstream")),
        ("openai.chat.stream_partial", lambda: openai_stream("openai.chat.stream_partial", 1)),
        ("anthropic.messages.stream_partial", anthropic_stream),
        ("openai.chat.stream_unread", lambda: openai_stream("openai.chat.stream_unread", 0)),
    ]


if __name__ == "__main__":
    main(instrument, nested_style="otel", library_exports=True, suites={"partial": partial_calls})
