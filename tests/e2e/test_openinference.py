"""OpenInference `openinference-instrumentation-openai` 0.1.66 / `-anthropic` 3.1.0 on the real SDKs
(their own `llm.*` attribute names, INTERNAL spans), exporting over OTLP/gRPC to a running spanmeter.

OpenInference's default mode emits no response id attribute; spanmeter reads the provider's id from
the raw response it records as `output.value`, so its span and the anthropic SDK's own span of the
same call are one record. With OPENINFERENCE_ENABLE_GENAI_SEMCONV=true it adds gen_ai.response.id
(same result)."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    FAILED_ANTHROPIC,
    FAILED_OPENAI,
    DriverRun,
    assert_call_record,
    assert_failed_call_record,
    assert_nested_trace,
    assert_one_record_per_call,
    assert_stream_without_usage,
    assert_two_tracers_one_record,
    run_driver,
)
from tests.fakes.llm_provider import FakeProvider

ANTHROPIC_OK = ["anthropic.messages", "anthropic.messages.stream", "anthropic.messages.stream_helper"]


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    return run_driver("openinference", e2e_collector, fake, service="e2e-openinference",
                      suites="openai,anthropic,nested")


@pytest.fixture(scope="module")
def run_with_sdk_tracing(e2e_collector: RunningCollector, fake: FakeProvider, run: DriverRun) -> DriverRun:
    return run_driver("openinference", e2e_collector, fake, service="e2e-openinference-sdk",
                      suites="anthropic", anthropic_builtin=True)


@pytest.fixture(scope="module")
def run_genai_semconv(e2e_collector: RunningCollector, fake: FakeProvider, run_with_sdk_tracing: DriverRun) -> DriverRun:
    return run_driver("openinference", e2e_collector, fake, service="e2e-openinference-genai", suites="anthropic",
                      anthropic_builtin=True, env={"OPENINFERENCE_ENABLE_GENAI_SEMCONV": "true"})


# What OpenInference reports: cached and reasoning tokens on chat and streams, cache read/write on
# Anthropic (a zero part may be left out); the response id only inside `output.value`.
CALLS = {
    "openai.chat": ("cache_read", "reasoning"),
    "openai.chat.stream_usage": ("cache_read", "reasoning"),
    "openai.embeddings": (),
    "openai.chat.error": (),
    "nested.first": ("cache_read", "reasoning"),
    "nested.second": ("cache_read", "reasoning"),
    "anthropic.messages": ("cache_read", "cache_write"),
    "anthropic.messages.stream": ("cache_read", "cache_write"),
    "anthropic.messages.stream_helper": ("cache_read", "cache_write"),
    "anthropic.messages.error": (),
}


@pytest.mark.parametrize("label", list(CALLS))
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    # The provider's response id (read from `output.value`) keys the record; embeddings have none.
    assert_call_record(record, exchange, reports=CALLS[label], response_id=exchange.response_id is not None)
    span = next(s for s in run.report["spans"] if s["span_id"] == record.span_id)
    assert span["kind"] == "INTERNAL" and span["attributes"]["openinference.span.kind"] in ("LLM", "EMBEDDING")
    assert not any(k.startswith("gen_ai.") for k in span["attributes"])  # its own names only


def test_error_records_take_the_status_message(run: DriverRun) -> None:
    # OpenInference sets no error.type: the span status description is the error type.
    openai_error, _ = run.record("openai.chat.error")
    assert openai_error.error_type is not None and openai_error.error_type.startswith("BadRequestError")
    anthropic_error, _ = run.record("anthropic.messages.error")
    assert anthropic_error.error_type is not None and "invalid_request_error" in anthropic_error.error_type


@pytest.mark.parametrize("label", [*FAILED_OPENAI, *FAILED_ANTHROPIC])
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    # Anthropic: the request id quoted in the error message keys it; OpenAI's errors name none.
    assert_failed_call_record(run, label, by_request_id=label in FAILED_ANTHROPIC)


@pytest.mark.parametrize("label", list(FAILED_ANTHROPIC))
@pytest.mark.parametrize("mode", ["default", "genai_semconv"])
def test_failed_call_traced_twice_is_one_error_record(
    run_with_sdk_tracing: DriverRun, run_genai_semconv: DriverRun, label: str, mode: str
) -> None:
    run = run_with_sdk_tracing if mode == "default" else run_genai_semconv
    assert_failed_call_record(run, label, by_request_id=True)


def test_stream_without_usage(run: DriverRun) -> None:
    assert_stream_without_usage(run)


def test_nested_agent_chain_trace_yields_two_records(run: DriverRun) -> None:
    """openinference.span.kind=AGENT/CHAIN parents with llm.token_count.* totals are not billed."""
    assert_nested_trace(run)


def test_one_record_per_call(run: DriverRun, run_with_sdk_tracing: DriverRun, run_genai_semconv: DriverRun) -> None:
    for each in (run, run_with_sdk_tracing, run_genai_semconv):
        assert_one_record_per_call(each)


@pytest.mark.parametrize("label", ANTHROPIC_OK)
def test_default_mode_with_sdk_tracing_is_one_record(run_with_sdk_tracing: DriverRun, label: str) -> None:
    """Two spans of one call (OpenInference's with the id only in its raw output, the SDK's with
    gen_ai.response.id), in one trace or two: one record, keyed by the provider's response id."""
    record, exchange = run_with_sdk_tracing.record(label)
    spans = [s for s in run_with_sdk_tracing.report["spans"]
             if s["attributes"].get("gen_ai.response.id") == exchange.response_id
             or f'"id":"{exchange.response_id}"' in s["attributes"].get("output.value", "")]
    assert sorted(s["scope"] for s in spans) == ["com.anthropic.sdk.python", "openinference.instrumentation.anthropic"]
    assert not any("gen_ai.response.id" in s["attributes"] for s in spans if s["scope"].startswith("openinference"))
    assert_call_record(record, exchange, reports=CALLS[label])


@pytest.mark.parametrize("label", ANTHROPIC_OK)
def test_genai_semconv_mode_with_sdk_tracing_is_one_record(run_genai_semconv: DriverRun, label: str) -> None:
    record, exchange, source = assert_two_tracers_one_record(run_genai_semconv, label,
                                                             "openinference.instrumentation.anthropic")
    # Whichever span was stored first is the record. OpenInference's GenAI mode puts the response
    # model in gen_ai.request.model (upstream bug); everything else agrees.
    request_model = exchange.response_model if source["scope"].startswith("openinference") else None
    assert_call_record(record, exchange, reports=CALLS[label], request_model=request_model)
