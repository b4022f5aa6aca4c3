"""OpenLLMetry `opentelemetry-instrumentation-openai` / `-anthropic` 0.62.4 on the real SDKs,
exporting over OTLP/HTTP (protobuf) to a running spanmeter.

The Anthropic calls run twice: with the anthropic SDK's own tracing on (its default), so each call
is described by two spans in two different traces that must still be one record (matched by
gen_ai.response.id), and with it off, to check OpenLLMetry's own Anthropic spans."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    DriverRun,
    assert_call_record,
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
    before = e2e_collector.metric("spanmeter_duplicates_total")
    result = run_driver("openllmetry", e2e_collector, fake, service="e2e-openllmetry", protocol="http",
                        suites="openai,anthropic,nested", anthropic_builtin=True)
    result.report["duplicates"] = e2e_collector.metric("spanmeter_duplicates_total") - before
    return result


@pytest.fixture(scope="module")
def run_alone(e2e_collector: RunningCollector, fake: FakeProvider, run: DriverRun) -> DriverRun:
    """Anthropic calls with the SDK's own tracing off: OpenLLMetry's spans only."""
    return run_driver("openllmetry", e2e_collector, fake, service="e2e-openllmetry-alone", protocol="grpc",
                      suites="anthropic", anthropic_builtin=False)


# What OpenLLMetry 0.62.4 reports per call: cached tokens everywhere (0 on embeddings), reasoning
# tokens on non-streaming chat only, no response id on embeddings.
OPENAI_CALLS = {
    "openai.chat": ("cache_read", "reasoning"),
    "openai.chat.stream_usage": ("cache_read",),
    "openai.embeddings": ("cache_read",),
    "openai.chat.error": (),
    "nested.first": ("cache_read", "reasoning"),
    "nested.second": ("cache_read", "reasoning"),
}


@pytest.mark.parametrize("label", list(OPENAI_CALLS))
def test_openai_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert_call_record(record, exchange, reports=OPENAI_CALLS[label], response_id=label != "openai.embeddings")


def test_openai_error_record(run: DriverRun) -> None:
    record, _ = run.record("openai.chat.error")
    assert record.error_type == "BadRequestError"


def test_stream_without_usage(run: DriverRun) -> None:
    assert_stream_without_usage(run)


def test_nested_workflow_trace_yields_two_records(run: DriverRun) -> None:
    """traceloop.span.kind=agent/workflow parents carrying provider and token totals are not billed."""
    assert_nested_trace(run)


@pytest.mark.parametrize("label", ANTHROPIC_OK)
def test_anthropic_sdk_spans_plus_openllmetry_spans_are_one_record(run: DriverRun, label: str) -> None:
    record, exchange, source = assert_two_tracers_one_record(run, label, "opentelemetry.instrumentation.anthropic")
    twins = [s for s in run.report["spans"] if s["attributes"].get("gen_ai.response.id") == exchange.response_id]
    assert twins[0]["trace_id"] != twins[1]["trace_id"]  # no app span: two traces, still one call
    # The first span stored is the record. Usually the SDK's (it ends first); if OpenLLMetry's
    # wins, its stream output count is one too high (upstream bug, see test_openllmetry_anthropic_alone).
    output = None
    if source["scope"] != "com.anthropic.sdk.python" and label != "anthropic.messages" and exchange.usage:
        output = exchange.usage.output_tokens + 1
    assert_call_record(record, exchange, reports=("cache_read", "cache_write"), output_tokens=output)


def test_anthropic_duplicates_counted(run: DriverRun) -> None:
    assert run.report["duplicates"] == len(ANTHROPIC_OK)


def test_one_record_per_call(run: DriverRun) -> None:
    # A failed Anthropic call has no response id: the SDK's span and OpenLLMetry's are two error
    # records (no tokens, no cost). Documented limitation.
    anthropic_errors = [r for r in run.records if r.provider == "anthropic" and r.status == "error"]
    assert len(anthropic_errors) == 2 and all(r.cost_usd is None and r.input_tokens is None
                                              for r in anthropic_errors)
    others = [x for x in run.exchanges if not (x.api.startswith("anthropic") and x.status >= 400)]
    assert len(run.records) == len(others) + 2
    for exchange in others:
        assert len(run.records_for(exchange)) == 1, exchange.model


@pytest.mark.parametrize("label", ANTHROPIC_OK + ["anthropic.messages.error"])
def test_openllmetry_anthropic_alone(run_alone: DriverRun, label: str) -> None:
    record, exchange = run_alone.record(label)
    output = None
    if label != "anthropic.messages" and exchange.usage is not None:
        # Upstream bug in 0.62.4: on streams it adds message_start's output_tokens (1) to
        # message_delta's cumulative count. Recorded as emitted; this shows when it is fixed.
        output = exchange.usage.output_tokens + 1
    assert_call_record(record, exchange, reports=("cache_read", "cache_write"), output_tokens=output)
    assert {s["scope"] for s in run_alone.report["spans"]} == {"opentelemetry.instrumentation.anthropic"}


def test_openllmetry_anthropic_alone_one_record_per_call(run_alone: DriverRun) -> None:
    assert_one_record_per_call(run_alone)
