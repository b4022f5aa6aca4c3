"""LangChain (`langchain-openai` ChatOpenAI / OpenAIEmbeddings) on the real openai SDK, under one
instrumentation family's LangChain instrumentation, with that family's openai instrumentation on
too (the usual setup) or off (`--suites` picks the calls; LANGCHAIN_E2E_FAMILY and
LANGCHAIN_E2E_WITH_OPENAI choose the libraries):

- `openinference`: openinference-instrumentation-langchain (+ openinference-instrumentation-openai);
- `openllmetry`: opentelemetry-instrumentation-langchain (+ opentelemetry-instrumentation-openai);
- `langfuse`: the Langfuse SDK's LangChain `CallbackHandler` on every model (Langfuse's spans go
  through the driver's exporter; Langfuse's own exporter is given a no-op one).

Suite `langchain`: the calls below, with the same models as the plain openai suite, so the tests
check them the same way."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import CALL_MODELS, Call, main

CALLBACKS: list[Any] = []  # LangChain callbacks every model gets (the Langfuse handler)


def instrument(provider: TracerProvider) -> list[str]:
    family = os.environ["LANGCHAIN_E2E_FAMILY"]
    with_openai = os.environ.get("LANGCHAIN_E2E_WITH_OPENAI") == "true"
    done = []
    if family == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
        done.append("openinference.instrumentation.langchain.LangChainInstrumentor")
        if with_openai:
            from openinference.instrumentation.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=provider)
            done.append("openinference.instrumentation.openai.OpenAIInstrumentor")
    elif family == "langfuse":
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        from opentelemetry.sdk.trace.export import SpanExportResult

        class Discard:
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

            def force_flush(self, timeout_millis: int = 0) -> bool:
                return True

        Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", base_url="http://127.0.0.1:9",
                 tracer_provider=provider, span_exporter=Discard())  # type: ignore[arg-type]
        CALLBACKS.append(CallbackHandler())
        done.append("langfuse.langchain.CallbackHandler")
    else:
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        LangchainInstrumentor().instrument(tracer_provider=provider)
        done.append("opentelemetry.instrumentation.langchain.LangchainInstrumentor")
        if with_openai:
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetryOpenAI

            OpenLLMetryOpenAI().instrument(tracer_provider=provider)
            done.append("opentelemetry.instrumentation.openai.OpenAIInstrumentor")
    return done


def langchain_calls(fake_url: str) -> list[Call]:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    def chat(label: str, **extra: Any) -> ChatOpenAI:
        return ChatOpenAI(model=CALL_MODELS[label], base_url=f"{fake_url}/v1", api_key="sk-test",  # type: ignore[arg-type]
                          max_retries=0, callbacks=CALLBACKS, **extra)

    messages = [("system", "You are terse."), ("human", "Say hi.")]

    def invoke() -> Any:
        return chat("openai.chat", temperature=0.2, max_tokens=100).invoke(messages).content

    def stream() -> Any:
        return "".join(str(c.content) for c in chat("openai.chat.stream_usage", stream_usage=True).stream(messages))

    def stream_in_app_span() -> Any:
        # the same stream inside the app's own span (a request handler's): the spans' parent
        with trace.get_tracer("spanmeter-e2e-app").start_as_current_span("handle-request"):
            return "".join(str(c.content) for c in chat("openai.chat.stream_in_app_span", stream_usage=True).stream(messages))

    def embeddings() -> Any:
        model = OpenAIEmbeddings(model=CALL_MODELS["openai.embeddings"], base_url=f"{fake_url}/v1", api_key="sk-test",  # type: ignore[arg-type]
                                 max_retries=0, check_embedding_ctx_length=False)
        return [len(v) for v in model.embed_documents(["hello", "second input"])]

    def error() -> Any:
        return chat("openai.chat.error").invoke(messages)

    return [("openai.chat", invoke), ("openai.chat.stream_usage", stream), ("openai.embeddings", embeddings),
            ("openai.chat.error", error), ("openai.chat.stream_in_app_span", stream_in_app_span)]


if __name__ == "__main__":
    main(instrument, nested_style="otel", suites={"langchain": langchain_calls})
