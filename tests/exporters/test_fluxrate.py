"""The `fluxrate` exporter, one event per record: the real OTel SDK exports spans to a running
spanmeter, which sends them to a fake Fluxrate on 127.0.0.1 that checks every request against the
SDK endpoint's contract (tests/exporters/fluxrate_target.py).

What a user billing through Fluxrate depends on: each billable record arrives once, with its
meter token, customer, exact quantity and idempotency key, and nothing else; records Fluxrate
cannot take (no meter token, customer or quantity) are skipped and counted, never sent; every
answer of the status table is handled as documented; nothing is lost or sent twice across an
outage or a kill -9.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.trace import Status, StatusCode, Tracer

from spanmeter.cli import main
from spanmeter.config import parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Paused, RetryLater
from spanmeter.exporters.fluxrate import FluxrateConfig, FluxrateExporter, RecordMapping, json_bytes
from spanmeter.exporters.per_record import Unsendable
from spanmeter.record import UsageRecord, format_ns
from tests.conftest import make_config, running_collector
from tests.exporters.fluxrate_target import (
    API_KEY,
    TOKENS,
    all_of,
    check_fluxrate,
    exact,
    fluxrate,
    keys,
    settings,
)
from tests.exporters.harness import (
    FAST,
    Case,
    export,
    kill_9_while_delivering,
    numbered_llm_spans,
    outage,
    wait_for,
)
from tests.fakes.rest_target import Answer, RestTarget
from tests.otlp_helpers import T0, llm_attributes, make_spans

ACCEPTED: Answer = (202, {}, {"ok": True, "duplicate": False})
CASE = Case(
    exporter_id="fluxrate/test",
    settings=settings,
    record_ids=keys,
    check=check_fluxrate,
    default=ACCEPTED,
)


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return fluxrate(rest_target(check=check_fluxrate, default=ACCEPTED))


def config_of(tmp_path: Path, url: str, **extra: Any) -> Any:
    exporter = {**settings(url), **FAST, **extra}
    return make_config(
        tmp_path, exporters={"fluxrate/test": exporter}, service={"pipelines": {"usage": {"exporters": ["fluxrate/test"]}}}
    )


def product_spans(tracer: Tracer) -> None:
    """A mapped meter (decimal quantity), a mapped event, an unmapped meter, a meter without a customer,
    and an LLM call that used no tokens."""
    meters = [("api_calls", "2.5", "acme"), ("storage_gb", "7", "acme"), ("api_calls", "3", None)]
    for i, (meter, quantity, customer) in enumerate(meters):
        with tracer.start_as_current_span(f"meter {i}", start_time=T0 + i) as span:
            span.set_attributes({"usage.meter": meter, "usage.quantity": quantity})
            if customer:
                span.set_attribute("usage.customer.id", customer)
    with tracer.start_as_current_span("export", start_time=T0 + 9) as span:
        span.set_attributes({"usage.event.name": "report_exported", "usage.customer.id": "acme"})
    no_tokens = llm_attributes(input_tokens=0, output_tokens=0, **{"usage.customer.id": "acme"})
    with tracer.start_as_current_span("chat failing", start_time=T0 + 10, attributes=no_tokens) as span:
        span.set_status(Status(StatusCode.ERROR, "rate limited"))


def test_each_record_is_one_event_with_the_contracts_fields(tmp_path: Path, target: RestTarget) -> None:
    with running_collector(config_of(tmp_path, target.url)) as collector:
        export(collector.http_url, [*numbered_llm_spans(3), *make_spans(product_spans)])
        stored = {r.idempotency_key: r for r in collector.records()}
        assert len(stored) == 8
        wait_for(lambda: len(target.accepted) == 5)
        [runner] = collector.collector.exporters
        skips = runner.exporter.mapping.skips.counts  # type: ignore[attr-defined]
        wait_for(lambda: collector.metric("spanmeter_exporter_dead_deliveries", {"exporter": "fluxrate/test"}) == 1)
        wait_for(lambda: collector.metric("spanmeter_exporter_records_behind", {"exporter": "fluxrate/test"}) == 0)
        skipped = {
            reason: collector.metric(
                "spanmeter_exporter_skipped_records_total", {"exporter": "fluxrate/test", "reason": reason}
            )
            for reason in ("no_meter_token", "no_quantity")
        }
    assert dict(skips) == {"no meter token for 'storage_gb'": 1, "'chat' with quantity 0 or none": 1}
    assert skipped == {"no_meter_token": 1, "no_quantity": 1}
    [dead] = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert "has no customer id, which Fluxrate requires" in dead["reason"] and "default_customer" in dead["reason"]
    bodies = {b["idempotency_key"]: b for b in all_of(target.accepted)}
    assert set(bodies) <= set(stored) and len(bodies) == 5
    for key, body in bodies.items():
        record = stored[key]
        assert body["customer_external_id"] == "acme"
        assert body["timestamp"] == format_ns(record.occurred_at)
        if record.kind == "llm":
            assert body["meter_token"] == TOKENS["chat"]
            assert body["quantity"] == record.total_tokens == (record.input_tokens or 0) + 500
        elif record.kind == "meter":
            assert (body["meter_token"], body["quantity"]) == (TOKENS["api_calls"], Decimal("2.5"))
        else:
            assert (body["meter_token"], body["quantity"]) == (TOKENS["report_exported"], 1)
        assert set(body) == {"meter_token", "customer_external_id", "quantity", "timestamp", "idempotency_key"}


def cli(tmp_path: Path, *args: str) -> Any:
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
    return CliRunner().invoke(main, [*args, "-c", str(config)])


def llm_record(**fields: Any) -> UsageRecord:
    values: dict[str, Any] = {"idempotency_key": "k1", "kind": "llm", "type": "chat", "occurred_at": T0,
                              "customer_id": "acme", "input_tokens": 900, "output_tokens": 100, "total_tokens": 1000}
    return UsageRecord(**{**values, **fields})


def mapping(**config: Any) -> RecordMapping:
    return RecordMapping("fluxrate/test", FluxrateConfig(**settings("http://127.0.0.1:1"), **config))


def test_quantity_comes_from_the_configured_token_field_and_zero_is_never_sent() -> None:
    usage = mapping(token_field="output_tokens").usage(llm_record())
    assert usage is not None and usage.quantity == 100 and usage.idempotency_key == "k1"
    both = mapping()
    assert [both.usage(llm_record(total_tokens=t)) for t in (0, None)] == [None, None]
    assert dict(both.skips.counts) == {"'chat' with quantity 0 or none": 2}


def test_skips_are_logged_with_the_fix_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    unmapped = mapping()
    with caplog.at_level(logging.WARNING):
        for i in range(12):
            assert unmapped.usage(llm_record(type="embeddings", idempotency_key=f"k{i}")) is None
    fix = "no meter token for 'embeddings' (add embeddings: <meter token> to meter_tokens to send them)"
    assert [r.getMessage() for r in caplog.records] == [
        f"exporter fluxrate/test: a record skipped, not sent: {fix}",
        f"exporter fluxrate/test: 10 records skipped so far: {fix}",
    ]


def test_a_record_without_customer_is_unsendable_unless_a_default_customer_is_set() -> None:
    record = llm_record(customer_id=None)
    with pytest.raises(Unsendable, match="has no customer id, which Fluxrate requires"):
        mapping().usage(record)
    usage = mapping(default_customer="internal").usage(record)
    assert usage is not None and usage.customer == "internal"
    assert mapping().usage(llm_record(customer_id=None, total_tokens=0)) is None  # not billable: skipped


def test_metadata_carries_only_the_configured_fields() -> None:
    record = llm_record(user_id="u-1", meta={"plan": "pro", "secret": "x"})
    usage = mapping(metadata=["user_id", "meta.plan", "feature"]).usage(record)
    assert usage is not None and usage.body()["metadata"] == {"user_id": "u-1", "meta.plan": "pro"}
    plain = mapping().usage(record)
    assert plain is not None and "metadata" not in plain.body()


def test_quantities_are_written_exactly() -> None:
    body = json.loads(json_bytes({"meter_token": "t", "quantity": Decimal("0.1") + Decimal("0.2")}), parse_float=Decimal)
    assert body["quantity"] == Decimal("0.3")
    big = Decimal("12345678901234567890.000000001")
    assert json.loads(json_bytes({"quantity": big}), parse_float=Decimal) == {"quantity": big}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"meter_tokens": {"chat": "not-a-uuid"}}, "is not a meter token: Fluxrate meter tokens are UUIDs"),
        ({"metadata": ["query"]}, "'query': expected meta.<key> or one of"),
        ({"metadata": ["user_id"], "aggregation": {"enabled": True, "state_path": "/tmp/w.db"}}, "metadata cannot be sent with aggregation"),
        ({"token_field": "words"}, "token_field"),
        ({"aggregation": {"enabled": True}}, "state_path: required with aggregation"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(tmp_path: Path, config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"exporters": {"fluxrate/x": {**settings("http://127.0.0.1:1"), **config}}}, {})
    assert any(problem in p and "exporters::fluxrate/x" in p for p in error.value.problems), error.value.problems


def test_an_exporter_without_api_key_does_not_start() -> None:
    config = FluxrateConfig(endpoint="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="api_key is not set"):
        FluxrateExporter("fluxrate/x", config)


@pytest.mark.parametrize(
    ("answer", "outcome", "said"),
    [
        ((400, {}, {"error": "quantity must be > 0"}), Dead, "quantity must be > 0"),
        ((422, {}, {"error": "meter_token unknown"}), Dead, "meter_token unknown"),
        ((401, {}, {"error": "invalid API key"}), Paused, "check the exporter's api_key"),
        ((403, {}, {"error": "forbidden"}), Paused, "check the exporter's api_key"),
        ((404, {}, {"error": "not found"}), Paused, "check the exporter's endpoint"),
        ((402, {"retry-after": "7200"}, {"error": "payment required"}), LongBackoff, "plan limit is reached"),
        ((429, {"retry-after": "7"}, {"error": "rate limited"}), RetryLater, "HTTP 429"),
        ((503, {"retry-after": "3"}, "unavailable"), RetryLater, "HTTP 503"),
        ((500, {}, "oops"), RetryLater, "HTTP 500"),
    ],
)
def test_each_answer_of_the_status_table(target: RestTarget, answer: Any, outcome: type, said: str) -> None:
    exporter = FluxrateExporter("fluxrate/test", FluxrateConfig(**settings(target.url)))
    try:
        target.answer_next(answer)
        body = exporter.body(llm_record())
        assert body is not None
        got = exporter.post(body)
        assert isinstance(got, outcome) and not isinstance(got, Delivered) and said in got.reason
        if "retry-after" in answer[1]:
            assert isinstance(got, (RetryLater, LongBackoff)) and got.retry_after == float(answer[1]["retry-after"])
        assert isinstance(exporter.post(body), Delivered)  # the fake's own answer after the scripted one
    finally:
        exporter.close()


def test_a_refused_event_is_a_dead_delivery_and_the_rest_goes_on(tmp_path: Path, target: RestTarget) -> None:
    target.answer_next((429, {"retry-after": "0"}, {"error": "slow down"}), (400, {}, {"error": "quantity: must be > 0"}))
    with running_collector(config_of(tmp_path, target.url)) as collector:
        export(collector.http_url, numbered_llm_spans(3))
        wait_for(lambda: collector.metric("spanmeter_exporter_dead_deliveries", {"exporter": "fluxrate/test"}) == 1)
        wait_for(lambda: len(target.accepted) == 2)
        assert collector.metric("spanmeter_export_failures_total", {"exporter": "fluxrate/test"}) == 1
    assert [r.answer for r in target.requests] == [429, 400, 202, 202]
    assert target.requests[0].body == target.requests[1].body  # the retry sent the same event
    [dead] = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert "HTTP 400" in dead["reason"] and "quantity: must be > 0" in dead["reason"]


def test_refused_key_pauses_the_exporter_with_a_loud_log(tmp_path: Path, target: RestTarget,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    target.answer_next((401, {}, {"error": "invalid API key"}))
    with caplog.at_level(logging.ERROR), running_collector(config_of(tmp_path, target.url)) as collector:
        export(collector.http_url, numbered_llm_spans(1))
        wait_for(lambda: len(target.accepted) == 1)
        assert collector.metric("spanmeter_exporter_dead_deliveries", {"exporter": "fluxrate/test"}) == 0
    assert any("paused" in r.message and "check the exporter's api_key" in r.message for r in caplog.records)
    assert API_KEY not in caplog.text


def test_exporters_check_says_fluxrate_has_none(tmp_path: Path) -> None:
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"storage": {"sqlite": {"path": str(tmp_path / "s.db")}},
                                  "exporters": {"fluxrate/x": settings("http://127.0.0.1:1")}}))
    result = CliRunner().invoke(main, ["exporters", "check", "fluxrate/x", "-c", str(config)])
    assert result.exit_code == 1 and "the fluxrate exporter type has no check" in result.output


def test_outage(tmp_path: Path) -> None:
    target = outage(tmp_path, CASE)
    assert all(exact(r)["quantity"] > 0 for r in target.accepted)


def test_kill_9_while_delivering(tmp_path: Path) -> None:
    kill_9_while_delivering(tmp_path, CASE)
