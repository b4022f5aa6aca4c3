"""The Langfuse SDK 5.2.0 (`langfuse.openai` drop-in) on the real `openai` SDK, its spans sent to a
running spanmeter over OTLP/gRPC through Langfuse's own span processor (`span_exporter=`).

Langfuse's spans carry no `gen_ai.*` names: `langfuse.observation.type` (generation, embedding)
marks the call, `langfuse.observation.model.name` the model that answered, and
`langfuse.observation.usage_details` the provider's raw usage as JSON. No provider name, no
response id, no request model: the provider comes from the model (the drop-in's span name for a
model genai-prices does not know), and a record is keyed by its span (one span per call)."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    FAILED_OPENAI,
    DriverRun,
    assert_call_record,
    assert_failed_call_record,
    assert_nested_trace,
    assert_one_record_per_call,
    assert_stream_without_usage,
    run_driver,
    write_capture,
)
from tests.fakes.llm_provider import FakeProvider


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    done = run_driver("langfuse_sdk", e2e_collector, fake, service="e2e-langfuse", suites="openai,nested")
    write_capture(done, f"langfuse-{done.report['packages']['langfuse']}")
    return done


# The drop-in passes OpenAI's raw usage through: cached and reasoning tokens on chat and streams.
CALLS = {
    "openai.chat": ("cache_read", "reasoning"),
    "openai.chat.stream_usage": ("cache_read", "reasoning"),
    "openai.embeddings": (),
    "nested.first": ("cache_read", "reasoning"),
    "nested.second": ("cache_read", "reasoning"),
}


@pytest.mark.parametrize("label", list(CALLS))
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert_call_record(record, exchange, reports=CALLS[label], response_id=False, names_request_model=False)
    span = next(s for s in run.report["spans"] if s["span_id"] == record.span_id)
    assert span["scope"] == "langfuse-sdk"
    assert not any(k.startswith("gen_ai.") for k in span["attributes"])  # its own names only
    assert record.idempotency_key == f"{record.trace_id}:{record.span_id}"


@pytest.mark.parametrize("label", list(FAILED_OPENAI))
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    record = assert_failed_call_record(run, label)
    # Langfuse names the requested model where a success names the answering one: the record
    # keeps it as the request model, with no response model.
    assert record.response_model is None
    assert record.error_type is not None and record.error_type.startswith(f"Error code: {FAILED_OPENAI[label]}")


def test_stream_without_usage(run: DriverRun) -> None:
    assert_stream_without_usage(run, names_request_model=False)


def test_nested_agent_chain_trace_yields_two_records(run: DriverRun) -> None:
    assert_nested_trace(run)


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)
