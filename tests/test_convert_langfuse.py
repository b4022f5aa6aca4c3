"""The Langfuse SDK's spans (no gen_ai.* names; usage and cost as JSON strings) → records: each
form of `usage_details` read into the inclusive counts, and every bad value a clear rejection."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.trace import StatusCode, Tracer

from spanmeter.convert.spans import ConvertOptions, convert_traces
from spanmeter.record import UsageRecord
from tests.otlp_helpers import make_spans, request_of


def generation(usage: Any = None, *, model: str = "gpt-4o-mini-2024-07-18", name: str = "OpenAI-generation",
               kind: str = "generation", error: bool = False, **extra: Any) -> Any:
    attrs: dict[str, Any] = {"langfuse.observation.type": kind, "langfuse.observation.model.name": model, **extra}
    if usage is not None:
        attrs["langfuse.observation.usage_details"] = usage if isinstance(usage, str) else json.dumps(usage)

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(name, attributes=attrs) as span:
            if error:
                span.set_status(StatusCode.ERROR, "Error code: 400")
    return build


def convert(build: Any) -> tuple[list[UsageRecord], str]:
    converted = convert_traces(request_of(make_spans(build)), ConvertOptions(), 0)
    return converted.records, converted.message


def one(build: Any) -> UsageRecord:
    records, message = convert(build)
    assert not message and len(records) == 1, message
    return records[0]


def counts(record: UsageRecord) -> tuple[int | None, ...]:
    return (record.input_tokens, record.output_tokens, record.total_tokens, record.cache_read_tokens,
            record.cache_write_tokens, record.reasoning_tokens)


def test_openai_raw_usage_is_inclusive() -> None:
    record = one(generation({"prompt_tokens": 1300, "completion_tokens": 250, "total_tokens": 1550,
                             "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 192}}))
    assert counts(record) == (1300, 250, 1550, 1024, None, 192)
    assert (record.provider, record.request_model, record.response_model) == ("openai", None, "gpt-4o-mini-2024-07-18")
    assert record.cost_source == "none"  # priced later, by the collector's pricer


def test_openai_responses_raw_usage() -> None:
    record = one(generation({"input_tokens": 1300, "output_tokens": 250, "total_tokens": 1550,
                             "input_tokens_details": {"cached_tokens": 1024},
                             "output_tokens_details": {"reasoning_tokens": 192}}))
    assert counts(record) == (1300, 250, 1550, 1024, None, 192)


def test_anthropic_raw_usage_is_exclusive() -> None:
    record = one(generation({"input_tokens": 17, "output_tokens": 42, "cache_read_input_tokens": 1000,
                             "cache_creation_input_tokens": 200}, model="claude-haiku-4-5-20251001", name="call"))
    assert counts(record) == (1217, 42, 1259, 1000, 200, None)
    assert record.provider == "anthropic"  # from the model


def test_langfuse_form_sums_its_parts() -> None:
    """Langfuse's own form (its LangChain handler): parts are left out of input/output."""
    record = one(generation({"input": 276, "output": 186, "total": 2510, "input_cache_read": 1024,
                             "input_audio": 0, "output_reasoning": 64, "input_priority": 5}))
    assert counts(record) == (1300, 250, 1550, 1024, None, 64)


def test_embedding_usage() -> None:
    record = one(generation({"input": 12}, kind="embedding", model="text-embedding-3-small",
                            name="OpenAI-embedding"))
    assert (record.type, record.input_tokens, record.output_tokens, record.total_tokens) == ("embeddings", 12, None, 12)


def test_other_observation_types_are_not_calls() -> None:
    for kind in ("span", "agent", "tool", "chain", "event"):
        records, message = convert(generation({"input": 5, "output": 5}, kind=kind))
        assert records == [] and not message


def test_failed_call_names_its_requested_model() -> None:
    record = one(generation(None, model="error-model", error=True,
                            **{"langfuse.observation.cost_details": '{"input": 0, "output": 0, "total": 0}'}))
    assert (record.status, record.provider, record.request_model, record.response_model) == (
        "error", "openai", "error-model", None)
    assert record.reported_cost_usd is None  # the drop-in's zeros are no reported cost


def test_reported_cost() -> None:
    record = one(generation({"input": 10, "output": 5},
                            **{"langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002}'}))
    assert record.reported_cost_usd == Decimal("0.003")
    record = one(generation({"input": 10, "output": 5},
                            **{"langfuse.observation.cost_details": '{"total": 0.0042, "input": 1}'}))
    assert record.reported_cost_usd == Decimal("0.0042")


def test_unknown_model_without_a_provider_hint_has_no_provider() -> None:
    assert one(generation({"input": 1}, model="my-finetune", name="my-call")).provider is None


@pytest.mark.parametrize(("usage", "error"), [
    ("{not json", "langfuse.observation.usage_details is not JSON"),
    ("[1, 2]", "langfuse.observation.usage_details must be a JSON object"),
    ({"prompt_tokens": -1}, "prompt_tokens must be a token count"),
    ({"prompt_tokens": "12"}, "prompt_tokens must be a token count"),
    ({"prompt_tokens": 1, "prompt_tokens_details": 3}, "prompt_tokens_details must be an object"),
    ({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1.5}},
     "prompt_tokens_details.cached_tokens must be a token count"),
    ({"input": 10**13}, "input must be a token count"),
])
def test_bad_usage_details_reject_the_span_with_a_clear_error(usage: Any, error: str) -> None:
    records, message = convert(generation(usage))
    assert records == [] and error in message, message


def test_bad_cost_details_reject_the_span() -> None:
    records, message = convert(generation({"input": 1}, **{"langfuse.observation.cost_details": '{"total": "x"}'}))
    assert records == [] and "langfuse.observation.cost_details.total must be a number" in message, message


def test_langchain_handler_names_provider_and_request_model() -> None:
    """Langfuse's LangChain handler copies LangChain's metadata (JSON strings) onto the span."""
    hints = {"langfuse.observation.metadata.ls_provider": '"anthropic"',
             "langfuse.observation.metadata.ls_model_name": '"claude-haiku-4-5"'}
    record = one(generation({"input": 17, "output": 42, "input_cache_read": 1000, "input_cache_creation": 200},
                            model="claude-haiku-4-5-20251001", name="ChatAnthropic", **hints))
    assert (record.provider, record.request_model, record.response_model) == (
        "anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001")
    assert counts(record) == (1217, 42, 1259, 1000, 200, None)


@pytest.mark.parametrize("value", ["openai", '"', '["openai"]', '""', '"' + "x" * 300 + '"'])
def test_a_malformed_langchain_hint_is_not_read(value: str) -> None:
    record = one(generation({"input": 1}, model="my-finetune", name="ChatX",
                            **{"langfuse.observation.metadata.ls_provider": value}))
    assert record.provider is None
