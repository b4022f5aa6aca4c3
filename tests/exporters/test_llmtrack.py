"""The llmtrack exporter against a fake LLMtrack (a real HTTP server on 127.0.0.1) that checks every
request against LLMtrack's ingest contract: `POST /api/ingest`, the ingestion key, one event per
request with only LLMtrack's fields and their types.

What a user depends on: each LLM call reaches LLMtrack exactly once with its provider, model,
tokens, latency, status and feature, through outages and a kill -9, and each documented answer
(400, 401, 402, 429, 5xx) is handled as LLMtrack's contract says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.trace import SpanKind, Tracer

from spanmeter.exporters.base import Dead, Delivered, Paused
from tests.conftest import make_config, running_collector
from tests.exporters.harness import Case, export, wait_for
from tests.exporters.keyless import (
    COUNT_OR_NULL,
    NUMBER,
    STRING,
    KeylessTypeTests,
    StatusRow,
    assert_config_problem,
    assert_status_row,
    contract_problem,
    exporter_for,
    json_object,
    llm_record,
    send_one,
)
from tests.fakes.rest_target import Answer, Request, RestTarget
from tests.otlp_helpers import T0, llm_attributes, make_spans

KEY = "lt_test_key"
ACCEPTED: Answer = (201, {}, {"ok": True, "consumption_source": "included"})
SHAPE = {
    "provider": STRING,
    "model": STRING,
    "prompt_tokens": COUNT_OR_NULL,
    "completion_tokens": COUNT_OR_NULL,
    "total_tokens": COUNT_OR_NULL,
    "cost": NUMBER,
    "latency_ms": COUNT_OR_NULL,
    "status": STRING,
    "metadata": json_object({"feature": STRING}, {"feature"}),
}


def contract(auth: tuple[str, str] = ("authorization", f"Bearer {KEY}")) -> Callable[[Request], str | None]:
    return lambda request: contract_problem(request, "/api/ingest", auth, SHAPE, {"provider", "model"})


CASE = Case(
    exporter_id="llmtrack/dashboards",
    settings=lambda url: {"endpoint": url, "api_key": KEY},
    record_ids=lambda request: [str(request.body["prompt_tokens"])],
    check=contract(),
    default=ACCEPTED,
)


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return rest_target(check=CASE.check, default=ACCEPTED)


def test_each_llm_call_is_one_event_with_its_feature(tmp_path: Path, target: RestTarget) -> None:
    def build(tracer: Tracer) -> None:
        for i, area in enumerate(("search", "search", None)):
            attributes = {**llm_attributes(input_tokens=100 + i), **({"usage.meta.area": area} if area else {})}
            with tracer.start_as_current_span(f"chat {i}", kind=SpanKind.CLIENT, attributes=attributes,
                                              start_time=T0 + i):
                pass
        with tracer.start_as_current_span("signup", attributes={"usage.event.name": "signup"}):
            pass  # a product event: not an LLM call, not sent

    exporter = {**CASE.config(target.url), "feature_from": "meta.area"}
    config = make_config(tmp_path, exporters={CASE.exporter_id: exporter},
                         service={"pipelines": {"usage": {"exporters": [CASE.exporter_id]}}})
    with running_collector(config) as collector:
        export(collector.http_url, make_spans(build, {"usage.customer.id": "acme"}))
        wait_for(lambda: len(target.accepted) == 3)
        stored = sorted(collector.records(kind="llm"), key=lambda r: r.input_tokens)
        assert len(collector.records()) == 4
    sent = sorted((r.body for r in target.accepted), key=lambda b: b["prompt_tokens"])
    assert sent == [
        {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 100 + i, "completion_tokens": 500,
         "total_tokens": 600 + i, "latency_ms": r.latency_ms, "status": "success", "cost": float(r.cost_usd),
         **({"metadata": {"feature": "search"}} if i < 2 else {})}
        for i, r in enumerate(stored)
    ]


def test_the_key_as_x_api_key_and_the_feature_from_a_record_field(rest_target: Callable[..., RestTarget]) -> None:
    target = rest_target(check=contract(("x-api-key", KEY)), default=ACCEPTED)
    with exporter_for(CASE, target.url, auth_header="x-api-key", feature_from="service_name") as exporter:
        assert send_one(exporter, llm_record(service_name="support-bot", meta={"feature": "x"})) == Delivered()
        assert send_one(exporter, llm_record(service_name=None)) == Delivered()
    first, second = (r.body for r in target.accepted)
    assert first["metadata"] == {"feature": "support-bot"} and "metadata" not in second


def test_unknown_counts_are_null_and_a_failed_call_says_error(target: RestTarget) -> None:
    record = llm_record(input_tokens=None, output_tokens=None, total_tokens=None, latency_ms=None, cost_usd=None,
                        cost_source="unknown", status="error", request_model=None, feature="triage")
    with exporter_for(CASE, target.url) as exporter:
        assert send_one(exporter, record) == Delivered()
    assert target.accepted[0].body == {
        "provider": "openai", "model": "gpt-4o-mini-2024-07-18", "prompt_tokens": None, "completion_tokens": None,
        "total_tokens": None, "latency_ms": None, "status": "error", "metadata": {"feature": "triage"},
    }


@pytest.mark.parametrize("missing", ["provider", "model"])
def test_a_record_without_provider_or_model_is_dead_and_not_sent(target: RestTarget, missing: str) -> None:
    values = {"provider": None} if missing == "provider" else {"request_model": None, "response_model": None}
    with exporter_for(CASE, target.url) as exporter:
        outcome = send_one(exporter, llm_record(**values))
    assert isinstance(outcome, Dead) and f"the record has no {missing}, which LLMtrack requires" in outcome.reason
    assert target.requests == []


class TestLLMtrack(KeylessTypeTests):
    CASE = CASE
    MESSAGES: ClassVar[Mapping[int, str]] = {400: "Invalid payload", 402: "Free plan quota exceeded",
                                             500: "Internal server error"}


@pytest.mark.parametrize("message", ["Missing API key", "Invalid API key", "Revoked API key", "Inactive API key"])
def test_each_refused_key_pauses_the_exporter(rest_target: Callable[..., RestTarget], message: str) -> None:
    assert_status_row(rest_target, CASE, StatusRow(401, Paused, "check the exporter's api_key"), message)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"feature_from": "prompt"}, "exporters::llmtrack/a::feature_from: expected meta.<key> or one of the record's"),
        ({"feature_from": "query"}, "got 'query'"),
        ({"feature_from": "meta."}, "got 'meta.'"),
        ({"auth_header": "bearer"}, "exporters::llmtrack/a::auth_header"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(settings: dict[str, Any], problem: str) -> None:
    assert_config_problem("llmtrack/a", {"endpoint": "http://x", "api_key": KEY, **settings}, problem)
