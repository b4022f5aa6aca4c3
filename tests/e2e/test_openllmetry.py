"""OpenLLMetry `opentelemetry-instrumentation-openai` / `-anthropic` 0.62.4 on the real SDKs,
exporting over OTLP/HTTP (protobuf) to a running spanmeter.

The Anthropic calls run twice: with the anthropic SDK's own tracing on (its default), so each call
is described by two spans in two different traces that must still be one record (matched by
gen_ai.response.id), and with it off, to check OpenLLMetry's own Anthropic spans."""

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


# OpenLLMetry 0.62.4 sends no span at all for a `messages.stream()` call that fails (upstream gap):
# nothing reaches spanmeter; with the SDK's own tracing on (its default) the SDK's span is the record.
NO_SPAN_WHEN_FAILED = "anthropic.messages.stream_helper.error_500"


def test_anthropic_duplicates_counted(run: DriverRun) -> None:
    # each successful call, and each failed call both tracers describe, is stored once
    assert run.report["duplicates"] == len(ANTHROPIC_OK) + len(FAILED_ANTHROPIC) - 1


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)


@pytest.mark.parametrize("label", list(FAILED_OPENAI))
def test_failed_openai_call_is_one_error_record(run: DriverRun, label: str) -> None:
    assert_failed_call_record(run, label)


@pytest.mark.parametrize("label", list(FAILED_ANTHROPIC))
def test_failed_anthropic_call_traced_twice_is_one_error_record(run: DriverRun, label: str) -> None:
    """The SDK's span (anthropic.request.id) and OpenLLMetry's (the error message quoting the
    body's request_id) name the same provider request: one error record."""
    record = assert_failed_call_record(run, label, by_request_id=True)
    exchange = run.exchange(label)
    assert exchange.response is not None
    request_id = exchange.response["request_id"]
    twins = [s for s in run.report["spans"] if s["attributes"].get("anthropic.request.id") == request_id
             or request_id in (s.get("status_description") or "")]
    tracers = ["com.anthropic.sdk.python"] + ([] if label == NO_SPAN_WHEN_FAILED else
                                              ["opentelemetry.instrumentation.anthropic"])
    assert sorted(s["scope"] for s in twins) == tracers
    assert record.error_type


@pytest.mark.parametrize("label", ANTHROPIC_OK + list(FAILED_ANTHROPIC))
def test_openllmetry_anthropic_alone(run_alone: DriverRun, label: str) -> None:
    if label == NO_SPAN_WHEN_FAILED:
        exchange = run_alone.exchange(label)
        assert exchange.status == 500 and not run_alone.records_for(exchange)
        assert not [s for s in run_alone.report["spans"]
                    if s["attributes"].get("gen_ai.request.model") == exchange.model], run_alone.span_summary()
        return
    record, exchange = run_alone.record(label)
    if exchange.status >= 400:
        assert_failed_call_record(run_alone, label, by_request_id=True)  # quoted in its error message
        return
    output = None
    if label != "anthropic.messages" and exchange.usage is not None:
        # Upstream bug in 0.62.4: on streams it adds message_start's output_tokens (1) to
        # message_delta's cumulative count. Recorded as emitted; this shows when it is fixed.
        output = exchange.usage.output_tokens + 1
    assert_call_record(record, exchange, reports=("cache_read", "cache_write"), output_tokens=output)
    assert {s["scope"] for s in run_alone.report["spans"]} == {"opentelemetry.instrumentation.anthropic"}


def test_openllmetry_anthropic_alone_one_record_per_call(run_alone: DriverRun) -> None:
    """Every call OpenLLMetry sends a span for is one record (all but NO_SPAN_WHEN_FAILED)."""
    missing = run_alone.exchange(NO_SPAN_WHEN_FAILED)
    assert len(run_alone.records) == len(run_alone.exchanges) - 1
    for exchange in run_alone.exchanges:
        assert len(run_alone.records_for(exchange)) == (exchange is not missing), exchange.model
