"""AWS Bedrock Runtime through boto3 1.44 under `opentelemetry-instrumentation-botocore` 0.66b2,
against the fake provider's Bedrock endpoint (Converse, and ConverseStream as an AWS event stream),
exporting over OTLP/gRPC to a running spanmeter with its default configuration.

Bedrock's `inputTokens` leaves the cache reads out (Nova here: 310 sent, 438 true) and the
instrumentation copies it as gen_ai.usage.input_tokens; its scope is in the default
`exclusive_input_scopes`, so the record has the true input and the right cost. A Bedrock call has no
response id: its record is keyed by the request id (`aws.request_id`)."""

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

FAILED = {"bedrock.converse.error": (400, "ValidationException"),
          "bedrock.converse.error_429": (429, "ThrottlingException"),
          "bedrock.converse_stream.error_500": (500, "InternalServerException")}


@pytest.fixture(scope="module")
def run(e2e_collector: RunningCollector, fake: FakeProvider) -> DriverRun:
    return run_suite_with_capture("bedrock", e2e_collector, fake, suite="bedrock",
                                  package="opentelemetry-instrumentation-botocore", capture="botocore-{version}-bedrock")


@pytest.mark.parametrize("label", ["bedrock.converse", "bedrock.converse_stream"])
def test_call_is_one_exact_record(run: DriverRun, label: str) -> None:
    record, exchange = run.record(label)
    assert exchange.usage is not None and exchange.wire_usage is not None
    span = source_span(run, record)
    # What the span says: Bedrock's exclusive count (310), the cache reads beside it.
    assert span["attributes"]["gen_ai.usage.input_tokens"] == exchange.wire_usage["inputTokens"] == 310
    assert span["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 128
    # Bedrock names no other model than the requested one: priced by it.
    assert record.response_model is None
    record.response_model = exchange.response_model  # (the helper compares the response model)
    assert_call_record(record, exchange, reports=("cache_read", "cache_write"), response_id=False)
    assert record.input_tokens == 438 and record.total_tokens == 438 + exchange.usage.output_tokens
    assert record.idempotency_key == f"llm:aws:request/{span['attributes']['aws.request_id']}"


@pytest.mark.parametrize("label", list(FAILED))
def test_failed_call_is_one_error_record(run: DriverRun, label: str) -> None:
    status, error_type = FAILED[label]
    record = assert_failed_status_record(run, label, status)
    assert record.error_type == error_type
    assert record.idempotency_key.startswith("llm:aws:request/req-fake-")


def test_one_record_per_call(run: DriverRun) -> None:
    assert_one_record_per_call(run)
