"""Pydantic Logfire 5.4.0 (`logfire.instrument_openai()` / `instrument_anthropic()`) on the real SDKs,
its spans sent to a running spanmeter over OTLP/gRPC (`additional_span_processors`).

A streamed call is two spans under Logfire, in two traces: the request span (no usage, no response
id, the request model as `gen_ai.response.model`) and the `streaming response` span (the usage, the
response id, the model that answered). One record per call: the second; the first is not a call.
Streams that end early (`partial` suite) are one record of what arrived once a chunk was read; a
stream closed before its first chunk leaves none (pinned, documented)."""

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
    expected_cost,
    run_driver,
    source_span,
    write_capture,
)
from tests.fakes.llm_provider import FakeProvider

STREAMS = ["openai.chat.stream_usage", "openai.chat.stream_no_usage", "anthropic.messages.stream",
           "anthropic.messages.stream_helper"]


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    done = run_driver("logfire_sdk", e2e_collector, fake, service="e2e-logfire", suites="openai,anthropic,nested")
    write_capture(done, f"logfire-{done.report['packages']['logfire']}")
    return done


@pytest.fixture(scope="module")
def run_with_sdk_tracing(e2e_collector: RunningCollector, fake: FakeProvider, run: DriverRun) -> DriverRun:
    return run_driver("logfire_sdk", e2e_collector, fake, service="e2e-logfire-sdk", suites="anthropic",
                      anthropic_builtin=True)


# Logfire puts cache reads (and Anthropic cache writes) on its spans; reasoning tokens only inside
# its `gen_ai.usage.raw` JSON, which is not read (they are inside the output count, priced alike).
CALLS = {
    "openai.chat": ("cache_read",),
    "openai.chat.stream_usage": ("cache_read",),
    "openai.embeddings": (),
    "nested.first": ("cache_read",),
    "nested.second": ("cache_read",),
    "anthropic.messages": ("cache_read", "cache_write"),
    "anthropic.messages.stream": ("cache_read", "cache_write"),
    "anthropic.messages.stream_helper": ("cache_read", "cache_write"),
}


@pytest.mark.parametrize("label", list(CALLS))
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert_call_record(record, exchange, reports=CALLS[label], response_id=label != "openai.embeddings")
    # Logfire's own price (`operation.cost`, genai-prices too) is kept as the reported cost: the same.
    assert record.reported_cost_usd == record.cost_usd


@pytest.mark.parametrize("label", STREAMS)
def test_streamed_call_is_its_streaming_response_span(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    call = next(c for c in run.report["calls"] if c["label"] == label)
    spans = [s for s in run.report["spans"] if s["span_id"] in call["span_ids"]]
    assert len(spans) == 2 and spans[0]["trace_id"] != spans[1]["trace_id"], run.span_summary()
    assert source_span(run, record)["name"].startswith("streaming response from")
    request = next(s for s in spans if s["span_id"] != record.span_id)
    assert request["attributes"]["gen_ai.response.model"] == exchange.model  # the request span's model
    assert record.response_model == exchange.response_model


@pytest.mark.parametrize("label", [*FAILED_OPENAI, *FAILED_ANTHROPIC])
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    # Anthropic: the request id quoted in the error message keys it; OpenAI's errors name none.
    record = assert_failed_call_record(run, label, by_request_id=label in FAILED_ANTHROPIC)
    # Logfire copies the request model into gen_ai.response.model of a failed call: the record
    # keeps it as the request model only.
    assert source_span(run, record)["attributes"]["gen_ai.response.model"] == record.request_model
    assert record.response_model is None


@pytest.mark.parametrize("label", ["anthropic.messages", "anthropic.messages.stream", "anthropic.messages.stream_helper",
                                   *FAILED_ANTHROPIC])
def test_with_sdk_tracing_is_one_record(run_with_sdk_tracing: DriverRun, label: str) -> None:
    """The anthropic SDK's own span beside Logfire's: one record, by response id or request id."""
    if label in FAILED_ANTHROPIC:
        assert_failed_call_record(run_with_sdk_tracing, label, by_request_id=True)
        return
    record, exchange = run_with_sdk_tracing.record(label)
    assert_call_record(record, exchange, reports=CALLS[label])


def test_stream_without_usage(run: DriverRun) -> None:
    assert_stream_without_usage(run)


def test_nested_agent_chain_trace_yields_two_records(run: DriverRun) -> None:
    assert_nested_trace(run)


def test_one_record_per_call(run: DriverRun, run_with_sdk_tracing: DriverRun) -> None:
    assert_one_record_per_call(run)
    assert_one_record_per_call(run_with_sdk_tracing)


@pytest.fixture(scope="module")
def partial(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    done = run_driver("logfire_sdk", e2e_collector, fake, service="e2e-logfire-partial", suites="partial")
    write_capture(done, f"logfire-{done.report['packages']['logfire']}-partial-streams")
    return done


def test_stream_closed_early_is_one_record_of_what_arrived(partial: DriverRun) -> None:
    """A stream the app closes after its first chunk still gets Logfire's `streaming response` span
    (with the response id and the model that answered): one record, with the counts received so far."""
    record, exchange = partial.record("openai.chat.stream_partial")
    assert source_span(partial, record)["name"].startswith("streaming response from")
    assert record.status == "success" and record.message_id == exchange.response_id
    assert record.response_model == exchange.response_model
    # OpenAI sends the usage in the stream's last chunk, never read: no counts, no cost (NULL, not 0).
    assert record.input_tokens is None and record.output_tokens is None
    assert record.cost_usd is None and record.cost_source == "none"

    record, exchange = partial.record("anthropic.messages.stream_partial")
    assert record.message_id == exchange.response_id and record.response_model == exchange.response_model
    usage = exchange.usage
    assert usage is not None
    # Anthropic's first event (message_start) holds the input counts and a running output count.
    start = exchange.events[0]["message"]["usage"]
    assert (record.input_tokens, record.cache_read_tokens) == (usage.input_tokens, usage.cache_read_tokens)
    assert record.output_tokens == start["output_tokens"] < usage.output_tokens
    assert record.cost_usd == expected_cost(record) and record.cost_source == "computed"


def test_stream_broken_by_the_provider_is_one_error_record_of_what_arrived(partial: DriverRun) -> None:
    """A stream the provider breaks after its first content chunk (its in-stream error): Logfire's
    `streaming response` span has status ERROR, `error.type` and what arrived: one error record,
    keyed by the response id, with the counts received (and their cost: they were answered)."""
    record, exchange = partial.record("openai.chat.stream.error_midstream")
    assert exchange.status == 200 and exchange.events[-1] == {"error": exchange.events[-1]["error"]}
    assert (record.status, record.error_type) == ("error", "APIError")
    assert record.message_id == exchange.response_id
    assert (record.request_model, record.response_model) == (exchange.model, exchange.response_model)
    assert record.input_tokens is None and record.cost_usd is None and record.cost_source == "none"

    record, exchange = partial.record("anthropic.messages.stream.error_midstream")
    assert exchange.events[-1]["type"] == "error" and exchange.wire_usage is not None
    assert (record.status, record.error_type) == ("error", "APIStatusError")
    assert record.message_id == exchange.response_id and record.response_model == exchange.response_model
    usage = exchange.usage
    assert usage is not None
    assert (record.input_tokens, record.cache_read_tokens) == (usage.input_tokens, usage.cache_read_tokens)
    assert record.output_tokens == exchange.wire_usage["output_tokens"] == 1
    assert record.cost_usd == expected_cost(record) and record.cost_source == "computed"


def test_stream_never_read_leaves_no_record(partial: DriverRun) -> None:
    """Known limit: a stream closed before its first chunk gets no `streaming response` span, and its
    request span is the same as that of every streamed call that has one (no response id, no counts,
    in another trace): counting it would count every read stream twice."""
    exchange = partial.exchange("openai.chat.stream_unread")
    assert exchange.status == 200 and partial.records_for(exchange) == []
    call = next(c for c in partial.report["calls"] if c["label"] == "openai.chat.stream_unread")
    (span,) = [s for s in partial.report["spans"] if s["span_id"] in call["span_ids"]]
    assert span["attributes"]["logfire.span_type"] == "span" and "gen_ai.response.id" not in span["attributes"]
    assert not any(k.startswith("gen_ai.usage.") for k in span["attributes"])
