"""Nested agent traces written with the plain OTel SDK tracer (no instrumentation library), the way
frameworks shape them: an agent span → a chain/workflow span → two model-call spans, with the
children's token totals repeated on both parents. Exported through the real OTLP/gRPC exporter;
exactly the two model calls become `llm` records, in each convention's style."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from tests.conftest import RunningCollector
from tests.e2e.conftest import describe, expected_cost
from tests.e2e.drivers.common import PARENT_STYLES, total_attributes

CALLS = [  # (request model, response model, input, output, cache read, reasoning, response id)
    ("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14", 700, 120, 512, 0, "chatcmpl-nested-1"),
    ("o4-mini", "o4-mini-2025-04-16", 1800, 960, 1024, 704, "chatcmpl-nested-2"),
]


def model_span_attributes(style: str, call: tuple[Any, ...]) -> dict[str, Any]:
    request, response, inp, out, cache, reasoning, response_id = call
    response_id = f"{response_id}-{style}"  # one collector for all styles: ids must not repeat
    if style == "openinference":  # openinference-instrumentation-openai's names
        return {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": response,
                "llm.invocation_parameters": f'{{"model": "{request}"}}', "llm.token_count.prompt": inp,
                "llm.token_count.completion": out, "llm.token_count.total": inp + out,
                "llm.token_count.prompt_details.cache_read": cache,
                "llm.token_count.completion_details.reasoning": reasoning}
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": request,
             "gen_ai.response.model": response, "gen_ai.response.id": response_id,
             "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
             "gen_ai.usage.cache_read.input_tokens": cache}
    if style == "traceloop":  # OpenLLMetry's names
        attrs |= {"gen_ai.usage.total_tokens": inp + out, "gen_ai.usage.reasoning_tokens": reasoning}
    else:
        attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
    return attrs


def export_nested_trace(collector: RunningCollector, style: str, service: str) -> tuple[int, list[int]]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("framework")
    agent_attrs, chain_attrs = PARENT_STYLES[style]
    model_span_ids = []
    with tracer.start_as_current_span("invoke_agent support-agent", attributes=agent_attrs) as agent:
        with tracer.start_as_current_span("plan-and-answer", attributes=chain_attrs) as chain:
            for call in CALLS:
                with tracer.start_as_current_span(f"chat {call[0]}", kind=SpanKind.CLIENT,
                                                  attributes=model_span_attributes(style, call)) as span:
                    model_span_ids.append(span.get_span_context().span_id)
            totals = total_attributes(style, sum(c[2] for c in CALLS), sum(c[3] for c in CALLS),
                                      sum(c[4] for c in CALLS))
            chain.set_attributes(totals)
        agent.set_attributes(totals)
        trace_id = agent.get_span_context().trace_id
    assert provider.force_flush(10_000)
    provider.shutdown()
    return trace_id, model_span_ids


@pytest.mark.parametrize("style", sorted(PARENT_STYLES))
def test_nested_trace_yields_exactly_the_two_model_calls(e2e_collector: RunningCollector, style: str) -> None:
    service = f"e2e-nested-{style}"
    trace_id, span_ids = export_nested_trace(e2e_collector, style, service)
    records = [r for r in e2e_collector.records() if r.service_name == service]
    assert len(records) == 2, [describe(r) for r in records]
    assert {r.trace_id for r in records} == {f"{trace_id:032x}"}
    assert sorted(r.span_id for r in records) == sorted(f"{s:016x}" for s in span_ids)
    for record in records:
        _request, response, inp, out, cache, reasoning, response_id = next(c for c in CALLS
                                                                          if c[0] == record.request_model)
        assert (record.kind, record.provider, record.response_model) == ("llm", "openai", response)
        assert (record.input_tokens, record.output_tokens, record.total_tokens) == (inp, out, inp + out)
        assert (record.cache_read_tokens, record.reasoning_tokens) == (cache, reasoning)
        if style != "openinference":
            assert record.idempotency_key == f"llm:openai:{response_id}-{style}"
        assert record.cost_source == "computed" and record.cost_usd == expected_cost(record)
