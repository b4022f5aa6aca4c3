"""One path: the same facts sent over OTLP (the real OTel SDK and its HTTP exporter) and over a
compatible REST endpoint become equal records, field by field."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Tracer

from spanmeter.record import UsageRecord
from tests.otlp_helpers import make_spans
from tests.receivers.conftest import Rest

# What both records must agree on; links, times and keys naturally differ.
LLM_FIELDS = (
    "kind", "type", "operation", "provider", "request_model", "response_model", "input_tokens", "output_tokens",
    "total_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "cost_source",
    "price_ref", "reported_cost_usd", "status", "error_type", "customer_id", "user_id", "conversation_id",
    "feature", "meta", "workspace",
)  # fmt: skip


def export(rest: Rest, build: Any, resource: dict[str, Any] | None = None) -> None:
    spans = make_spans(build, resource)
    exporter = OTLPSpanExporter(endpoint=f"{rest.running.http_url}/v1/traces")
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()


def by_source(rest: Rest, kind: str) -> tuple[UsageRecord, UsageRecord]:
    """(the record from OTLP, the record from REST)."""
    records = rest.running.records(kind=kind)
    assert len(records) == 2
    otlp = next(r for r in records if r.trace_id is not None)
    other = next(r for r in records if r.trace_id is None)
    return otlp, other


def test_an_llm_call_over_otlp_and_over_llmtrack_is_the_same_record(rest: Rest) -> None:
    def build(tracer: Tracer) -> None:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 80,
            "usage.feature": "support-chat",
            "usage.meta.plan": "pro",
            "user.id": "u1",
            "gen_ai.conversation.id": "c1",
        }
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attributes):
            time.sleep(0.01)

    export(rest, build, {"usage.customer.id": "acme"})
    body = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt_tokens": 120,
        "completion_tokens": 80,
        "total_tokens": 200,
        "latency_ms": 10,
        "metadata": {"feature": "support-chat", "customer_id": "acme", "user_id": "u1", "conversation_id": "c1",
                     "plan": "pro"},
    }  # fmt: skip
    assert rest.post("/api/ingest", body).status_code == 201

    otlp, llmtrack = by_source(rest, "llm")
    for name in LLM_FIELDS:
        assert getattr(otlp, name) == getattr(llmtrack, name), name
    assert otlp.cost_usd is not None and otlp.cost_usd > 0 and otlp.total_tokens == 200
    assert otlp.customer_id == "acme" and otlp.provider == "openai"


def test_a_product_event_over_otlp_and_over_tokensand_is_the_same_record(rest: Rest) -> None:
    def build(tracer: Tracer) -> None:
        attributes = {
            "usage.event.name": "FIRST_API_CALL",
            "usage.event.family": "activation",
            "user.id": "dev_42",
            "user.email": "ada@company.com",
            "usage.account.domain": "company.com",
            "usage.product.id": "prod_api",
            "usage.product.name": "Payments API",
            "usage.source": "SDK",
            "usage.campaign.id": "launch-week",
        }
        with tracer.start_as_current_span("first call", attributes=attributes):
            pass

    export(rest, build)
    event = {"event_name": "FIRST_API_CALL", "event_family": "activation", "developer_id": "dev_42",
             "email": "ada@company.com", "account_domain": "company.com",
             "product": {"id": "prod_api", "name": "Payments API"}, "source": "SDK", "campaignId": "launch-week"}  # fmt: skip
    assert rest.post("/api/usage/track", event).status_code == 202
    otlp, tokensand = by_source(rest, "event")
    for name in ("kind", "type", "event_name", "event_family", "user_id", "email", "account_domain", "product",
                 "source", "campaign_id", "workspace", "cost_source", "meta", "tags"):  # fmt: skip
        assert getattr(otlp, name) == getattr(tokensand, name), name


def test_a_meter_over_otlp_and_over_fluxrate_is_the_same_record(rest: Rest) -> None:
    def build(tracer: Tracer) -> None:
        attributes = {"usage.meter": "api_calls", "usage.quantity": "2.5", "usage.customer.id": "cust_1",
                      "usage.meta.region": "eu"}  # fmt: skip
        with tracer.start_as_current_span("meter", attributes=attributes):
            pass

    export(rest, build)
    call = {"meter_token": "api_calls", "customer_external_id": "cust_1", "quantity": 2.5,
            "metadata": {"region": "eu"}}  # fmt: skip
    assert rest.post("/api/v1/sdk/track", call).status_code == 202
    otlp, fluxrate = by_source(rest, "meter")
    for name in ("kind", "type", "meter", "quantity", "customer_id", "meta", "workspace", "cost_source"):
        assert getattr(otlp, name) == getattr(fluxrate, name), name
