"""The official `opentelemetry-instrumentation-openai-v2` 2.4b0 on the real `openai` SDK, exporting
over OTLP/gRPC to a running spanmeter."""

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
)
from tests.fakes.llm_provider import FakeProvider


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    return run_driver("openai_v2", e2e_collector, fake, service="e2e-openai-v2", suites="openai,nested",
                      protocol="grpc")


# openai-v2 2.4b0 puts no cached or reasoning tokens on its spans (so the cached input is priced as
# plain input: the library's limit, see docs/instrumentations.md), and no response id on embeddings.
@pytest.mark.parametrize("label", ["openai.chat", "openai.chat.stream_usage", "openai.embeddings",
                                   "openai.chat.error", "nested.first", "nested.second"])
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert_call_record(record, exchange, reports=(), response_id=label != "openai.embeddings")


def test_error_record(run: DriverRun) -> None:
    record, exchange = run.record("openai.chat.error")
    assert exchange.status == 400
    assert record.error_type == "<class 'openai.BadRequestError'>"  # what 2.4b0 sets (sic)


@pytest.mark.parametrize("label", list(FAILED_OPENAI))
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    assert_failed_call_record(run, label)


def test_stream_without_usage(run: DriverRun) -> None:
    assert_stream_without_usage(run)


def test_nested_agent_trace_yields_two_records(run: DriverRun) -> None:
    assert_nested_trace(run)


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)
    assert {s["scope"] for s in run.report["spans"]} >= {"opentelemetry.util.genai.handler",
                                                         "opentelemetry.instrumentation.openai_v2"}
