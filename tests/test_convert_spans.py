"""Span → record rules: which spans count, keys, events, who, token contract, content, cost."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.trace import Tracer

from spanmeter.convert.spans import ConvertOptions, convert_traces
from spanmeter.pricing import PRICE_DATA_VERSION, PriceOverride, Pricer
from spanmeter.record import UsageRecord
from tests.otlp_helpers import llm_attributes, make_spans, request_of


def convert(build: Any, resource: dict[str, Any] | None = None, **options: Any) -> list[UsageRecord]:
    converted = convert_traces(request_of(make_spans(build, resource)), ConvertOptions(**options), 0)
    assert converted.rejected == 0, converted.message
    return converted.records


def agent_trace(tracer: Tracer) -> None:
    """An agent framework: agent → chain → two model calls, totals repeated on the parents."""
    totals = {"gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 80}
    with tracer.start_as_current_span("invoke_agent support", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", **totals}), \
            tracer.start_as_current_span("workflow triage", attributes={
                "traceloop.span.kind": "workflow", "gen_ai.provider.name": "openai", **totals}):
        with tracer.start_as_current_span("chain", attributes={
            "openinference.span.kind": "CHAIN", "llm.token_count.prompt": 300, "llm.token_count.completion": 80}):
            for n in (1, 2):
                with tracer.start_as_current_span("chat", attributes=llm_attributes(
                        input_tokens=100 * n, output_tokens=30 + 10 * (n - 1))):
                    pass
        with tracer.start_as_current_span("execute_tool search", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.provider.name": "openai", **totals}):
            pass


def test_nested_agent_trace_counts_only_the_model_calls() -> None:
    records = convert(agent_trace)
    assert [(r.kind, r.input_tokens, r.output_tokens) for r in records] == [("llm", 100, 30), ("llm", 200, 40)]
    assert sum(r.input_tokens or 0 for r in records) == 300


def test_counted_operations_are_configurable() -> None:
    records = convert(agent_trace, count_operations=frozenset({"invoke_agent"}))
    assert [(r.type, r.input_tokens) for r in records] == [("invoke_agent", 300)]


def test_one_provider_call_in_two_traces_has_one_key() -> None:
    """The Anthropic SDK's own span and an instrumentation's span of the same call, in two traces."""
    def build(tracer: Tracer) -> None:
        current = {**llm_attributes(model="claude-haiku-4-5", provider="anthropic"), "gen_ai.response.id": "msg_01"}
        legacy = {k: v for k, v in current.items() if k != "gen_ai.provider.name"} | {"gen_ai.system": "Anthropic"}
        for attrs in (current, legacy):
            with tracer.start_as_current_span("chat", attributes=attrs):
                pass
    keys = {r.idempotency_key for r in convert(build)}
    assert keys == {"llm:anthropic:msg_01"}


def test_span_events_and_meters_give_several_records_per_span() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={
                **llm_attributes(), "usage.meter": "requests", "usage.quantity": 1}) as span:
            span.add_event("usage", {"usage.event.name": "FIRST_API_CALL", "usage.event.family": "activation"})
            span.add_event("log", {"message": "not usage"})
            span.add_event("usage", {"usage.event.name": "QUOTA_WARNING", "usage.idempotency_key": "quota-1"})
    records = convert(build, {"usage.customer.id": "acme", "usage.account.domain": "acme.com"})
    by_type = {r.type: r for r in records}
    assert set(by_type) == {"chat", "requests", "FIRST_API_CALL", "QUOTA_WARNING"}
    base = by_type["chat"].idempotency_key
    assert by_type["requests"].idempotency_key == f"{base}:meter"
    assert by_type["FIRST_API_CALL"].idempotency_key == f"{base}:event/0"
    assert by_type["QUOTA_WARNING"].idempotency_key == "quota-1"
    assert all(r.customer_id == "acme" and r.account_domain == "acme.com" for r in records)


def test_span_attributes_win_over_resource_attributes() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={**llm_attributes(), "usage.customer.id": "span-cust"}):
            pass
        with tracer.start_as_current_span("chat", attributes=llm_attributes()):
            pass
    records = convert(build, {"usage.customer.id": "resource-cust", "enduser.id": "dev-1"})
    assert [r.customer_id for r in records] == ["span-cust", "resource-cust"]
    assert {r.user_id for r in records} == {"dev-1"}


def one(attrs: dict[str, Any], **options: Any) -> UsageRecord:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("call", attributes=attrs):
            pass
    [record] = convert(build, **options)
    return record


def test_inclusive_counts_pass_through_unchanged() -> None:
    record = one(llm_attributes(input_tokens=1217, output_tokens=42, **{
        "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.cache_creation.input_tokens": 200}))
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (1217, 1000, 200)
    assert record.total_tokens == 1259


def test_exclusive_counts_from_a_configured_scope_are_normalised() -> None:
    """A source passing Anthropic's exclusive input_tokens through (17 = without 1000 + 200 cached)."""
    attrs = llm_attributes(input_tokens=17, output_tokens=42, **{
        "gen_ai.usage.cache_read.input_tokens": 1, "gen_ai.usage.cache_write.input_tokens": 2})
    assert one(attrs).input_tokens == 17  # 17 >= 3 could be inclusive: not touched by default
    record = one(attrs, exclusive_input_scopes=frozenset({"spanmeter-tests"}))
    assert (record.input_tokens, record.total_tokens) == (20, 62)


def test_impossible_parts_reveal_exclusive_counts() -> None:
    record = one(llm_attributes(input_tokens=17, output_tokens=50, **{
        "gen_ai.usage.total_tokens": 67, "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_write.input_tokens": 200, "gen_ai.usage.reasoning.output_tokens": 192}))
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (1217, 242, 1459)


def test_failed_call_keeps_tokens_as_reported() -> None:
    def build(tracer: Tracer) -> None:
        from opentelemetry.trace import Status, StatusCode
        with tracer.start_as_current_span("chat", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "error.type": "openai.RateLimitError"}) as span:
            span.set_status(Status(StatusCode.ERROR, "429"))
    [record] = convert(build)
    assert (record.status, record.error_type) == ("error", "openai.RateLimitError")
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (None, None, None)
    Pricer().price(record)
    assert (record.cost_usd, record.cost_source) == (None, "none")


MESSAGES = '[{"role": "system", "parts": [{"type": "text", "content": "Be terse."}]}, ' \
           '{"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]}]'


def test_content_capture_is_off_by_default_and_truncates() -> None:
    attrs = llm_attributes(**{"gen_ai.input.messages": MESSAGES})
    assert one(attrs).query is None
    assert one(attrs, content_capture=True).query == "What is the capital of France?"
    assert one(attrs, content_capture=True, content_max_chars=7).query == "What is"


@pytest.mark.parametrize("attrs", [
    {"llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be terse.",
     "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "Hi there"},
    {"llm.input_messages.0.message.role": "user",
     "llm.input_messages.0.message.contents.0.message_content.text": "Hi there"},
    {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Hi there"},
    {"gen_ai.prompt": "Hi there"},
])
def test_prompt_from_other_conventions(attrs: dict[str, str]) -> None:
    assert one({**llm_attributes(), **attrs}, content_capture=True).query == "Hi there"


def priced(attrs: dict[str, Any], pricer: Pricer | None = None) -> tuple[UsageRecord, bool]:
    record = one(attrs)
    differs = (pricer or Pricer()).price(record)
    return record, differs


def test_price_ref_names_the_data_version_and_the_model() -> None:
    record, _ = priced(llm_attributes(model="gpt-4o"))
    assert record.cost_source == "computed"
    assert record.price_ref == f"{PRICE_DATA_VERSION} openai/gpt-4o"


def test_provider_names_are_normalised_to_genai_prices_ids() -> None:
    assert one(llm_attributes(provider="aws.bedrock")).provider == "aws"
    assert one(llm_attributes(provider="gcp.vertex_ai")).provider == "google"
    assert one(llm_attributes(provider="Anthropic")).provider == "anthropic"
    assert one(llm_attributes(provider="my-own-gateway")).provider == "my-own-gateway"


def test_override_wins_and_can_be_per_customer() -> None:
    overrides = (
        PriceOverride(model="gpt-4o*", customer="bigco", input_mtok=Decimal(1), output_mtok=Decimal(2)),
        PriceOverride(model="ft:*", input_mtok=Decimal(3), output_mtok=Decimal(6),
                      cache_read_mtok=Decimal("0.5")),
    )
    pricer = Pricer(overrides)
    contract = one({**llm_attributes(model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=500_000),
                    "usage.customer.id": "bigco"})
    pricer.price(contract)
    assert (contract.cost_usd, contract.cost_source, contract.price_ref) == (Decimal(2), "override", "override gpt-4o*")
    fine_tuned = one(llm_attributes(model="ft:gpt-4o:acme:1", input_tokens=2000, output_tokens=100, **{
        "gen_ai.usage.cache_read.input_tokens": 1000}))
    pricer.price(fine_tuned)
    # 1000 plain input at $3/M + 1000 cached at $0.5/M + 100 output at $6/M
    assert fine_tuned.cost_usd == Decimal("0.0041")
    other = one(llm_attributes(model="gpt-4o-mini"))
    pricer.price(other)
    assert other.cost_source == "computed"


def test_bundled_prices_can_be_switched_off() -> None:
    record, _ = priced(llm_attributes(model="gpt-4o"), Pricer(use_bundled_prices=False))
    assert (record.cost_source, record.cost_usd) == ("unknown", None)


def test_reported_cost_kept_billed_only_when_unknown_or_configured() -> None:
    known, differs = priced(llm_attributes(model="gpt-4o-mini", **{"gen_ai.usage.cost": 0.00045}))
    assert (known.cost_source, known.cost_usd, known.reported_cost_usd) == ("computed", Decimal("0.00045"),
                                                                           Decimal("0.00045"))
    assert not differs
    off, differs = priced(llm_attributes(model="gpt-4o-mini", **{"llm.cost.total": 0.01}))
    assert off.cost_source == "computed" and differs
    unknown, _ = priced(llm_attributes(model="in-house-13b", **{"gen_ai.usage.cost": 0.002}))
    assert (unknown.cost_source, unknown.cost_usd) == ("reported", Decimal("0.002"))
    wins, _ = priced(llm_attributes(model="gpt-4o-mini", **{"gen_ai.usage.cost": 0.01}),
                     Pricer(reported_cost_wins=True))
    assert (wins.cost_source, wins.cost_usd) == ("reported", Decimal("0.01"))


def test_cost_is_exact_to_the_nano_dollar() -> None:
    record, _ = priced(llm_attributes(model="gpt-4o-mini", input_tokens=1, output_tokens=1))
    # $0.15/M input + $0.60/M output: 0.00000015 + 0.0000006, no float rounding
    assert record.cost_usd == Decimal("0.00000075")


def test_resources_are_remembered_by_their_encoding_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from spanmeter.convert import values

    monkeypatch.setattr(values, "_RESOURCES", {})

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes=llm_attributes()):
            pass

    def customers(resource: dict[str, Any]) -> list[str | None]:
        return [r.customer_id for r in convert(build, resource)]

    # The same resource again reads the same; a changed one is read anew, never the remembered one.
    assert customers({"usage.customer.id": "acme"}) == ["acme"]
    assert customers({"usage.customer.id": "acme"}) == ["acme"]
    assert customers({"usage.customer.id": "globex"}) == ["globex"]
    assert customers({"usage.customer.id": "acme", "usage.meta.plan": "pro"}) == ["acme"]
    assert len(values._RESOURCES) == 3
    # The stored facts are shared between requests: conversion must leave them as they were.
    remembered = {k: dict(v) for k, v in values._RESOURCES.items()}
    assert customers({"usage.customer.id": "acme", "usage.meta.plan": "pro"}) == ["acme"]
    assert {k: dict(v) for k, v in values._RESOURCES.items()} == remembered

    monkeypatch.setattr(values, "RESOURCES_REMEMBERED", 2)
    for name in ("a", "b", "c", "d"):
        assert customers({"usage.customer.id": name}) == [name]
        assert len(values._RESOURCES) <= 2
    monkeypatch.setattr(values, "RESOURCE_BYTES_REMEMBERED", 10)
    values._RESOURCES.clear()
    assert customers({"usage.customer.id": "e"}) == ["e"]
    assert values._RESOURCES == {}  # larger than the size bound: read every time


BOTOCORE_BEDROCK = "opentelemetry.instrumentation.botocore.bedrock-runtime"


@pytest.mark.parametrize(("scope", "options", "expected_input"), [
    (BOTOCORE_BEDROCK, {}, 438),  # known exclusive by default: 310 + 128 cache reads
    ("some.other.library", {}, 310),  # inclusive by default (the cache is smaller than the input)
    (BOTOCORE_BEDROCK, {"exclusive_input_scopes": frozenset()}, 310),  # the operator's list wins
])
def test_bedrock_input_excludes_cache_reads_by_default(scope: str, options: dict[str, Any], expected_input: int) -> None:
    """Bedrock's inputTokens leaves the cache reads out; botocore's instrumentation copies it."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.system": "aws.bedrock", "gen_ai.request.model": "amazon.nova-pro-v1:0",
             "gen_ai.usage.input_tokens": 310, "gen_ai.usage.output_tokens": 64,
             "gen_ai.usage.cache_read.input_tokens": 128, "aws.request_id": "req-1"}
    with provider.get_tracer(scope).start_as_current_span("chat amazon.nova-pro-v1:0", attributes=attrs):
        pass
    converted = convert_traces(request_of(memory.get_finished_spans()), ConvertOptions(**options), 0)
    (record,) = converted.records
    assert (record.provider, record.input_tokens, record.total_tokens, record.cache_read_tokens) == (
        "aws", expected_input, expected_input + 64, 128)
    assert record.idempotency_key == "llm:aws:request/req-1"
