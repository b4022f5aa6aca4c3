"""Logfire's streamed calls: the request span without an answer is not a call of its own (its
`streaming response` span is); every other Logfire span of a call is one."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from spanmeter.convert.spans import ConvertOptions, convert_span
from spanmeter.record import UsageRecord
from tests.otlp_helpers import request_of

REQUEST = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
           "gen_ai.response.model": "gpt-4o", "logfire.span_type": "span"}


def convert(scope: str, attrs: dict[str, Any], *, error: bool = False) -> list[UsageRecord]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer(scope).start_as_current_span("Chat Completion with {request_data[model]!r}",
                                                         attributes=attrs) as span:
        if error:
            span.set_status(StatusCode.ERROR, "BadRequestError: Error code: 400")
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    otlp = request_of(spans).resource_spans[0].scope_spans[0]
    return convert_span(otlp.spans[0], {}, ConvertOptions(), 0, otlp.scope.name)


@pytest.mark.parametrize("scope", ["logfire.openai", "logfire.anthropic"])
def test_request_half_of_a_stream_is_no_record(scope: str) -> None:
    assert convert(scope, REQUEST) == []


@pytest.mark.parametrize("extra", [{"gen_ai.response.id": "chatcmpl-1"}, {"gen_ai.usage.input_tokens": 10},
                                   {"gen_ai.usage.output_tokens": 3}, {"logfire.span_type": "log"}])
def test_a_span_with_an_answer_is_a_call(extra: dict[str, Any]) -> None:
    assert len(convert("logfire.openai", REQUEST | extra)) == 1


def test_a_failed_request_is_the_error_record() -> None:
    (record,) = convert("logfire.openai", REQUEST, error=True)
    assert (record.status, record.request_model, record.response_model) == ("error", "gpt-4o", None)


def test_other_scopes_are_unchanged() -> None:
    (record,) = convert("my.tracer", REQUEST)
    assert record.input_tokens is None and record.response_model == "gpt-4o"
