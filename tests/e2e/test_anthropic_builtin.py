"""The anthropic SDK's own tracing (on by default in anthropic 2.x), no instrumentation library:
its `anthropic.messages.create` spans, exported over OTLP/gRPC to a running spanmeter."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    FAILED_ANTHROPIC,
    DriverRun,
    assert_call_record,
    assert_failed_call_record,
    assert_one_record_per_call,
    run_driver,
)
from tests.fakes.llm_provider import FakeProvider


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    return run_driver("anthropic_builtin", e2e_collector, fake, service="e2e-anthropic-sdk", suites="anthropic",
                      anthropic_builtin=True)


@pytest.mark.parametrize("label", ["anthropic.messages", "anthropic.messages.stream",
                                   "anthropic.messages.stream_helper", "anthropic.messages.error"])
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    # Anthropic's wire input_tokens exclude the cache; the SDK's span (and the record) include them.
    assert_call_record(record, exchange, reports=("cache_read", "cache_write"))
    span = next(s for s in run.report["spans"] if s["span_id"] == record.span_id)
    assert span["scope"] == "com.anthropic.sdk.python" and span["name"] == "anthropic.messages.create"


def test_error_type_is_the_api_error_type(run: DriverRun) -> None:
    record, _ = run.record("anthropic.messages.error")
    assert record.error_type == "invalid_request_error"


@pytest.mark.parametrize("label", list(FAILED_ANTHROPIC))
def test_failed_call_is_one_error_record_keyed_by_its_request_id(run: DriverRun, label: str) -> None:
    # The SDK records the `request-id` header as anthropic.request.id on failed calls too.
    assert_failed_call_record(run, label, by_request_id=True)


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)
