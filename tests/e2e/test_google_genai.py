"""The `google-genai` SDK 2.34 (Gemini API) under `opentelemetry-instrumentation-google-genai` 1.1b1,
against the fake provider's Gemini endpoint, exporting over OTLP/gRPC to a running spanmeter.

Gemini's `candidatesTokenCount` leaves the thinking tokens out; the instrumentation adds them into
gen_ai.usage.output_tokens (the GenAI contract) and names the provider `gemini`, which spanmeter
prices as genai-prices' `google`. The instrumentation's `instruments` pin is google-genai < 3: with
google-genai 3.x it instruments nothing (no span, no record) unless `skip_dep_check=True`."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    DriverRun,
    assert_call_record,
    assert_failed_status_record,
    assert_one_record_per_call,
    run_suite_with_capture,
    source_span,
)
from tests.fakes.llm_provider import FakeProvider

FAILED = {"gemini.generate.error": 400, "gemini.generate.error_429": 429, "gemini.generate_stream.error_500": 500}


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    return run_suite_with_capture("google_genai", e2e_collector, fake, suite="gemini",
                                  package="opentelemetry-instrumentation-google-genai", capture="google-genai-{version}")


@pytest.mark.parametrize("label", ["gemini.generate", "gemini.generate_stream"])
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert source_span(run, record)["attributes"]["gen_ai.provider.name"] == "gemini"
    assert_call_record(record, exchange, reports=("cache_read", "reasoning"), operation="generate_content")


@pytest.mark.parametrize("label", list(FAILED))
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    record = assert_failed_status_record(run, label, FAILED[label], operation="generate_content")
    assert record.error_type == str(FAILED[label])  # the instrumentation's error.type: the HTTP status


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)
