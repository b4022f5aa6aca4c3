"""What every instrumentation driver shares: the OTel SDK set up with the REAL OTLP exporter, and the
SDK calls made against the fake provider.

A driver is run as its own process (`python -m tests.e2e.drivers.<library> ...`) because each
instrumentation library patches the `openai` / `anthropic` SDKs globally; one process per library
keeps them from seeing each other. Arguments:

    --endpoint    the collector: `127.0.0.1:PORT` (grpc) or `http://127.0.0.1:PORT` (http)
    --protocol    grpc | http   (opentelemetry-exporter-otlp-proto-grpc / -http)
    --fake-url    the fake provider's base URL (tests/fakes/llm_provider.py), e.g. http://127.0.0.1:PORT
    --service     service.name of the resource (the tests tell runs apart by it)
    --suites      comma-separated: openai, anthropic, nested

It prints one JSON object on stdout: the calls it made (label, request model, client error) and
every span it finished (name, ids, scope, attributes), so a failing test can show what was sent.
Which model each call uses is fixed here (CALL_MODELS): the tests find a call's record by model.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

# label -> request model. Distinct models per call, so that a record names its call.
CALL_MODELS: dict[str, str] = {
    "openai.chat": "gpt-4o-mini",
    "openai.chat.stream_usage": "gpt-4.1-mini",
    "openai.chat.stream_no_usage": "gpt-4o",
    "openai.embeddings": "text-embedding-3-small",
    "openai.chat.error": "error-model",
    "openai.chat.error_429": "rate-limit-model",
    "openai.chat.stream.error_500": "server-error-model",
    "anthropic.messages": "claude-haiku-4-5",
    "anthropic.messages.stream": "claude-sonnet-4-5",
    "anthropic.messages.stream_helper": "claude-opus-4-1",
    "anthropic.messages.error": "error-model",
    "anthropic.messages.error_429": "rate-limit-model",
    "anthropic.messages.stream.error_529": "overloaded-model",
    "anthropic.messages.stream_helper.error_500": "server-error-model",
    "bedrock.converse": "amazon.nova-pro-v1:0",
    "bedrock.converse_stream": "amazon.nova-lite-v1:0",
    "bedrock.converse.error": "error-model",
    "bedrock.converse.error_429": "rate-limit-model",
    "bedrock.converse_stream.error_500": "server-error-model",
    "gemini.generate": "gemini-2.5-flash",
    "gemini.generate_stream": "gemini-2.0-flash",
    "gemini.generate.error": "error-model",
    "gemini.generate.error_429": "rate-limit-model",
    "gemini.generate_stream.error_500": "server-error-model",
    "openai.chat.stream_in_app_span": "o3-mini",
    "openai.chat.stream_partial": "gpt-4.1",
    "openai.chat.stream_unread": "gpt-3.5-turbo",
    "anthropic.messages.stream_partial": "claude-3-5-haiku-latest",
    "openai.chat.stream.error_midstream": "midstream-error-gpt",
    "anthropic.messages.stream.error_midstream": "midstream-error-claude",
    "nested.first": "gpt-4.1-nano",
    "nested.second": "o4-mini",
}
PACKAGES = (
    "openai", "anthropic", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http", "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai", "opentelemetry-instrumentation-openai",
    "opentelemetry-instrumentation-anthropic", "openinference-instrumentation-openai",
    "openinference-instrumentation-anthropic", "langfuse", "logfire", "langchain-core", "langchain-openai",
    "openinference-instrumentation-langchain", "opentelemetry-instrumentation-langchain", "boto3", "botocore",
    "opentelemetry-instrumentation-botocore", "google-genai", "opentelemetry-instrumentation-google-genai",
)

Call = tuple[str, Callable[[], Any]]
# What a library that owns its tracer provider needs flushed before the report (its batching processor).
FLUSH_HOOKS: list[Callable[[], bool]] = []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    ap.add_argument("--fake-url", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--suites", default="openai,anthropic,nested")
    return ap.parse_args(argv)


def otlp_exporter(args: argparse.Namespace) -> Any:
    """The real OTLP span exporter to the collector."""
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=args.endpoint, insecure=True, timeout=10)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=f"{args.endpoint.rstrip('/')}/v1/traces", timeout=10)


def setup_tracing(args: argparse.Namespace, *, export: bool = True) -> tuple[TracerProvider, InMemorySpanExporter]:
    """The global tracer provider, exporting through the real OTLP exporter (batching), plus an
    in-memory copy of every span for the driver's report. `export=False`: the library exports
    itself (its own span processor, given `otlp_exporter(args)`)."""
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    if export:
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter(args), schedule_delay_millis=200))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # Global: the anthropic SDK's built-in tracing and the app's own spans use it.
    trace.set_tracer_provider(provider)
    return provider, memory


def openai_calls(fake_url: str) -> list[Call]:
    import openai

    client = openai.OpenAI(base_url=f"{fake_url}/v1", api_key="sk-test", max_retries=0)
    msgs: Any = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}]

    def chat() -> Any:
        return client.chat.completions.create(
            model=CALL_MODELS["openai.chat"], messages=msgs, temperature=0.2, max_tokens=100, seed=7,
            user="end-user-42",
        ).id

    def stream(label: str, **extra: Any) -> Callable[[], Any]:
        def run() -> Any:
            chunks = client.chat.completions.create(model=CALL_MODELS[label], messages=msgs, stream=True, **extra)
            return "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)

        return run

    def embeddings() -> Any:
        result = client.embeddings.create(model=CALL_MODELS["openai.embeddings"], input=["hello", "second input"])
        return [len(d.embedding) for d in result.data]

    def error(label: str) -> Callable[[], Any]:
        return lambda: client.chat.completions.create(model=CALL_MODELS[label], messages=msgs)

    return [
        ("openai.chat", chat),
        ("openai.chat.stream_usage", stream("openai.chat.stream_usage", stream_options={"include_usage": True})),
        ("openai.chat.stream_no_usage", stream("openai.chat.stream_no_usage")),
        ("openai.embeddings", embeddings),
        ("openai.chat.error", error("openai.chat.error")),
        ("openai.chat.error_429", error("openai.chat.error_429")),
        ("openai.chat.stream.error_500", stream("openai.chat.stream.error_500", stream_options={"include_usage": True})),
    ]


def anthropic_calls(fake_url: str) -> list[Call]:
    import anthropic

    client = anthropic.Anthropic(base_url=fake_url, api_key="sk-ant-test", max_retries=0)
    system: Any = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    msgs: Any = [{"role": "user", "content": "Say hi."}]

    def messages() -> Any:
        return client.messages.create(
            model=CALL_MODELS["anthropic.messages"], max_tokens=100, system=system, messages=msgs,
            metadata={"user_id": "end-user-42"},
        ).id

    def stream(label: str) -> Callable[[], Any]:
        def run() -> Any:
            events = client.messages.create(
                model=CALL_MODELS[label], max_tokens=100, system=system, messages=msgs, stream=True
            )
            return [e.type for e in events]

        return run

    def stream_helper(label: str) -> Callable[[], Any]:
        def run() -> Any:
            with client.messages.stream(model=CALL_MODELS[label], max_tokens=100, system=system, messages=msgs) as s:
                return s.get_final_message().id

        return run

    def error(label: str) -> Callable[[], Any]:
        return lambda: client.messages.create(model=CALL_MODELS[label], max_tokens=100, messages=msgs)

    return [
        ("anthropic.messages", messages),
        ("anthropic.messages.stream", stream("anthropic.messages.stream")),
        ("anthropic.messages.stream_helper", stream_helper("anthropic.messages.stream_helper")),
        ("anthropic.messages.error", error("anthropic.messages.error")),
        ("anthropic.messages.error_429", error("anthropic.messages.error_429")),
        ("anthropic.messages.stream.error_529", stream("anthropic.messages.stream.error_529")),
        ("anthropic.messages.stream_helper.error_500", stream_helper("anthropic.messages.stream_helper.error_500")),
    ]


# --- nested: an agent → a chain/workflow → two model calls, totals repeated on the parents ---------

# Attributes a framework sets on its wrapper spans, per style. The token totals are added after the
# children finished (as frameworks do), see nested_calls.
PARENT_STYLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # Plain OTel GenAI conventions (e.g. an agent framework's own spans).
    "otel": (
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
         "gen_ai.agent.name": "support-agent", "gen_ai.agent.id": "agent-1", "gen_ai.request.model": "o4-mini"},
        {"gen_ai.operation.name": "invoke_workflow", "gen_ai.provider.name": "openai",
         "gen_ai.workflow.name": "plan-and-answer"},
    ),
    # OpenLLMetry / traceloop-sdk decorators (@agent, @workflow).
    "traceloop": (
        {"traceloop.span.kind": "agent", "traceloop.entity.name": "support-agent",
         "traceloop.workflow.name": "support", "gen_ai.provider.name": "openai"},
        {"traceloop.span.kind": "workflow", "traceloop.entity.name": "plan-and-answer",
         "traceloop.workflow.name": "support", "gen_ai.provider.name": "openai"},
    ),
    # OpenInference frameworks (LangChain, LlamaIndex, CrewAI instrumentations).
    "openinference": (
        {"openinference.span.kind": "AGENT", "llm.system": "openai", "llm.provider": "openai"},
        {"openinference.span.kind": "CHAIN", "llm.system": "openai", "llm.provider": "openai"},
    ),
}


def total_attributes(style: str, input_tokens: int, output_tokens: int, cache_read: int) -> dict[str, Any]:
    """The children's token totals, as each style repeats them on the parents."""
    if style == "openinference":
        return {"llm.token_count.prompt": input_tokens, "llm.token_count.completion": output_tokens,
                "llm.token_count.total": input_tokens + output_tokens,
                "llm.token_count.prompt_details.cache_read": cache_read}
    names = {"gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
             "gen_ai.usage.cache_read.input_tokens": cache_read}
    if style == "traceloop":
        names["llm.usage.total_tokens"] = input_tokens + output_tokens
    return names


def nested_calls(fake_url: str, style: str) -> list[Call]:
    import openai

    client = openai.OpenAI(base_url=f"{fake_url}/v1", api_key="sk-test", max_retries=0)
    tracer = trace.get_tracer("spanmeter-e2e-app")
    agent_attrs, chain_attrs = PARENT_STYLES[style]

    def run() -> Any:
        with tracer.start_as_current_span(
            "invoke_agent support-agent" if style == "otel" else "support-agent.agent",
            kind=SpanKind.INTERNAL, attributes=agent_attrs,
        ) as agent:
            with tracer.start_as_current_span(
                "invoke_workflow plan-and-answer" if style == "otel" else "plan-and-answer.workflow",
                kind=SpanKind.INTERNAL, attributes=chain_attrs,
            ) as chain:
                totals = [0, 0, 0]
                ids = []
                for label in ("nested.first", "nested.second"):
                    response = client.chat.completions.create(
                        model=CALL_MODELS[label], messages=[{"role": "user", "content": label}]
                    )
                    assert response.usage is not None
                    totals[0] += response.usage.prompt_tokens
                    totals[1] += response.usage.completion_tokens
                    details = response.usage.prompt_tokens_details
                    totals[2] += (details.cached_tokens or 0) if details else 0
                    ids.append(response.id)
                chain.set_attributes(total_attributes(style, *totals))
            agent.set_attributes(total_attributes(style, *totals))
        return ids

    return [("nested", run)]


# --- running and reporting -----------------------------------------------------------------------

@contextmanager
def report(provider: TracerProvider, memory: InMemorySpanExporter, instrumented: list[str]) -> Iterator[list[Any]]:
    """Collects the calls made inside; at exit flushes the OTLP exporter and prints the report."""
    calls: list[Any] = []
    out: dict[str, Any] = {"instrumented": instrumented, "packages": versions(), "calls": calls}
    try:
        yield calls
    finally:
        hooks_flushed = [hook() for hook in FLUSH_HOOKS]  # every hook, even after one failed
        out["flushed"] = all(hooks_flushed) and provider.force_flush(15_000)
        out["spans"] = [dump_span(s) for s in memory.get_finished_spans()]
        provider.shutdown()
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()


def run_calls(calls: list[Call], into: list[Any], memory: InMemorySpanExporter | None = None) -> None:
    for label, fn in calls:
        before = len(memory.get_finished_spans()) if memory is not None else 0
        error = None
        result: Any = None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the report says what failed
            error = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            if not is_failure(label):
                print(f"{label} failed: {error}", file=sys.stderr)
        # The spans finished during the call (for captures: tests/e2e/conftest.py write_capture).
        spans = [f"{s.context.span_id:016x}" for s in memory.get_finished_spans()[before:]] if memory else []
        into.append({"label": label, "model": CALL_MODELS.get(label), "result": _jsonable(result), "error": error,
                     "span_ids": spans})


def is_failure(label: str) -> bool:
    """Calls the fake provider answers with an error (400, 429, 500, 529): their labels say so."""
    return ".error" in label


def main(
    instrument: Callable[..., list[str]],
    nested_style: str,
    argv: list[str] | None = None,
    *,
    library_exports: bool = False,
    suites: dict[str, Callable[[str], list[Call]]] | None = None,
) -> None:
    """Run the driver. `instrument(provider)` turns the library on; with `library_exports` the
    library exports through its own span processor: `instrument(provider, exporter)` gets the OTLP
    exporter to the collector. `suites`: the driver's own suites (name -> calls of the fake URL)."""
    args = parse_args(argv)
    provider, memory = setup_tracing(args, export=not library_exports)
    instrumented = instrument(provider, otlp_exporter(args)) if library_exports else instrument(provider)
    chosen = [s for s in args.suites.split(",") if s]
    known: dict[str, Callable[[str], list[Call]]] = {
        "openai": openai_calls, "anthropic": anthropic_calls,
        "nested": lambda url: nested_calls(url, nested_style), **(suites or {}),
    }
    with report(provider, memory, instrumented) as calls:
        for suite in chosen:
            run_calls(known[suite](args.fake_url), calls, memory)


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def dump_span(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "scope": scope.name if scope else None,
        "scope_version": scope.version if scope else None,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": _jsonable(dict(span.attributes or {})),
        "events": [{"name": e.name, "timestamp_unix_nano": e.timestamp, "attributes": _jsonable(dict(e.attributes or {}))}
                   for e in span.events],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
