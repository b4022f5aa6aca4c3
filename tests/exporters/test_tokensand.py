"""The tokens& exporter against a fake tokens& (a real HTTP server on 127.0.0.1) that checks every
request against the tracking API's contract (path, Bearer tracking key, at most 500 events, each
event's field names and types, no field the contract does not have) and answers as tokens& does.

What a user depends on: every event record reaches tokens& once per idempotency key, with its
documented fields only; an event tokens& refuses is a dead delivery saying why while the others of
its batch are not sent again; a refused key pauses the exporter without giving records up.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from spanmeter.cli import main
from spanmeter.errors import ConfigError
from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Partial, Paused, RetryLater
from spanmeter.exporters.tokensand import NO_DEVELOPER, TokensandConfig, TokensandExporter
from spanmeter.record import Product, UsageRecord, format_ns
from spanmeter.store.outbox import Claim
from tests.conftest import RunningCollector, make_config, running_collector
from tests.exporters.harness import (
    FAST,
    Case,
    export,
    kill_9_while_delivering,
    numbered_llm_spans,
    outage,
    wait_for,
)
from tests.fakes.rest_target import Answer, Request, RestTarget
from tests.otlp_helpers import T0, make_spans

API_KEY = "tk_live_test"
BATCH, DRY_RUN = "/api/usage/track/batch", "/api/usage/track/dry-run"
FAMILIES = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")
EVENT_FIELDS: dict[str, type] = {
    "event_name": str, "developer_id": str, "email": str, "event_family": str, "product": dict,
    "account_domain": str, "source": str, "campaignId": str, "occurredAt": str, "idempotencyKey": str,
}
PRODUCT_FIELDS = ("id", "name", "type", "version")


# --- the fake tokens& ------------------------------------------------------------------------


def event_problem(event: Any, where: str) -> str | None:
    """What breaks the contract in one event, or None."""
    if not isinstance(event, dict):
        return f"{where}: expected an object"
    for name, value in event.items():
        if name not in EVENT_FIELDS:
            return f"{where}.{name}: not a field of the contract"
        if not isinstance(value, EVENT_FIELDS[name]) or value in ("", {}):
            return f"{where}.{name}: expected a non-empty {EVENT_FIELDS[name].__name__}, got {value!r}"
    if "event_name" not in event:
        return f"{where}.event_name: required"
    if "developer_id" not in event and "email" not in event:
        return f"{where}: developer_id or email required"
    if event.get("event_family", "intent") not in FAMILIES:
        return f"{where}.event_family: not one of {FAMILIES}"
    product = event.get("product", {})
    if any(k not in PRODUCT_FIELDS or not isinstance(v, str) for k, v in product.items()):
        return f"{where}.product: only string {PRODUCT_FIELDS}, got {product!r}"
    if "occurredAt" in event:
        when = datetime.fromisoformat(event["occurredAt"])
        if not event["occurredAt"].endswith("Z") or when.utcoffset() != timedelta(0):
            return f"{where}.occurredAt: expected ISO-8601 UTC, got {event['occurredAt']!r}"
    if "idempotencyKey" not in event:  # optional for tokens&, always sent by spanmeter
        return f"{where}.idempotencyKey: missing"
    return None


def check_tokensand(request: Request) -> str | None:
    if request.method != "POST" or request.path not in (BATCH, DRY_RUN):
        return f"expected POST {BATCH} or {DRY_RUN}"
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return f"authorization: {request.headers.get('authorization')!r}"
    if request.headers.get("content-type") != "application/json":
        return f"content-type: {request.headers.get('content-type')!r}"
    if request.path == DRY_RUN:
        return event_problem(request.body, "event")
    body = request.body
    if not isinstance(body, dict) or list(body) != ["events"] or not isinstance(body["events"], list):
        return 'expected {"events": [...]}'
    if not 1 <= len(body["events"]) <= 500:
        return f"{len(body['events'])} events: 1 to 500 per batch"
    return next((p for i, e in enumerate(body["events"]) if (p := event_problem(e, f"events[{i}]"))), None)


Refuse = Callable[[dict[str, Any]], str | None]  # an event -> tokens&'s error for it, or None


def tokensand(target: RestTarget, refuse: Refuse | None = None) -> RestTarget:
    """Answer as tokens& does (scripted answers first): the batch's 202 counts the events stored,
    the duplicates (a key stored before) and the refused ones by index; dry-run echoes the event."""
    stored: set[str] = set()

    def answer(request: Request) -> Answer | None:
        if target.script:  # called under target.lock: the script is read, not locked again
            return None
        if request.path == DRY_RUN:
            return 200, {}, {"ok": True, "valid": True, "event": request.body}
        accepted = duplicates = 0
        errors = []
        for index, event in enumerate(request.body["events"]):
            problem = refuse(event) if refuse else None
            if problem:
                errors.append({"index": index, "error": f"events[{index}].{problem}"})
            elif event["idempotencyKey"] in stored:
                duplicates += 1
            else:
                stored.add(event["idempotencyKey"])
                accepted += 1
        return 202, {}, {"ok": True, "accepted": accepted, "duplicates": duplicates, "errors": errors}

    target.respond(answer)
    return target


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return tokensand(rest_target(check=check_tokensand))


def keys(request: Request) -> list[str]:
    return [e["idempotencyKey"] for e in request.body["events"]] if request.path == BATCH else []


# --- records ----------------------------------------------------------------------------------


def event_spans(count: int, attributes: dict[str, Any] | None = None) -> list[ReadableSpan]:
    """`count` product event spans, developer dev-<i>, with `attributes`."""

    def build(tracer: Tracer) -> None:
        for i in range(count):
            values = {"usage.event.name": "FIRST_API_CALL", "usage.user.id": f"dev-{i}", **(attributes or {})}
            with tracer.start_as_current_span(f"event {i}", attributes=values, start_time=T0 + i * 1_000_000):
                pass

    return list(make_spans(build, {"usage.customer.id": "acme"}))


def tokensand_config(tmp_path: Path, url: str, **settings: Any) -> Any:
    exporter = {"endpoint": url, "api_key": API_KEY, **FAST, **settings}
    return make_config(tmp_path, exporters={"tokensand/crm": exporter},
                       service={"pipelines": {"usage": {"exporters": ["tokensand/crm"]}}})


def cli(tmp_path: Path, *args: str, **settings: Any) -> Any:
    config = tmp_path / "cli.yaml"
    exporter = {"endpoint": "http://127.0.0.1:9", "api_key": API_KEY, **settings}
    config.write_text(json.dumps({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}},
                                  "exporters": {"tokensand/crm": exporter}}))
    return CliRunner().invoke(main, [*args, "-c", str(config)])


def dead_count(collector: RunningCollector) -> float:
    return collector.metric("spanmeter_exported_records_total", {"exporter": "tokensand/crm", "outcome": "dead"})


# --- what is sent -------------------------------------------------------------------------------


def test_event_records_go_out_with_exactly_the_contract_fields(tmp_path: Path, target: RestTarget) -> None:
    full = {
        "usage.event.family": "Activation", "usage.user.email": "ada@company.com",
        "usage.account.domain": "company.com", "usage.source": "SDK", "usage.campaign.id": "launch-week",
        "usage.idempotency_key": "evt-1", "usage.product.id": "p-1", "usage.product.name": "Router",
        "usage.product.type": "API", "usage.product.version": "2.1", "usage.product.category": "infra",
    }

    def others(tracer: Tracer) -> None:
        with tracer.start_as_current_span("by email", attributes={"usage.event.name": "SDK_INIT",
                                                                  "usage.user.email": "bob@company.com"}):
            pass
        with tracer.start_as_current_span("nobody", attributes={"usage.event.name": "DOCS_OPEN"}):
            pass
        with tracer.start_as_current_span("meter", attributes={"usage.meter": "api_calls", "usage.quantity": 42,
                                                               "usage.user.id": "dev-9"}):
            pass

    with running_collector(tokensand_config(tmp_path, target.url)) as collector:
        export(collector.http_url, event_spans(1, full))
        export(collector.http_url, make_spans(others))
        export(collector.http_url, numbered_llm_spans(2))  # LLM records: off by default
        wait_for(lambda: dead_count(collector) == 1)
        stored = {r.event_name or r.kind: r for r in collector.records()}
        assert len(stored) == 5
        wait_for(lambda: len(target.counts(keys)) == 2)
    first, second = [e for r in target.accepted for e in r.body["events"]]  # in storage order
    assert first == {
        "idempotencyKey": "evt-1", "event_name": "FIRST_API_CALL", "event_family": "activation",
        "developer_id": "dev-0", "email": "ada@company.com",
        "product": {"id": "p-1", "name": "Router", "type": "API", "version": "2.1"},  # no category: not tokens&'s
        "account_domain": "company.com", "source": "SDK", "campaignId": "launch-week",
        "occurredAt": "2025-11-23T12:13:20.000000Z",
    }
    assert second == {"idempotencyKey": stored["SDK_INIT"].idempotency_key, "event_name": "SDK_INIT",
                      "email": "bob@company.com", "occurredAt": format_ns(stored["SDK_INIT"].occurred_at)}
    # Listing deliveries sends nothing: the tracking key's variable need not be set.
    listed = cli(tmp_path, "deliveries", "list", "--json", api_key="${env:TOKENSAND_KEY_NOT_SET}")
    assert listed.exit_code == 0, listed.output
    dead = json.loads(listed.output)
    assert [(d["record_id"], d["reason"]) for d in dead] == [(stored["DOCS_OPEN"].id, NO_DEVELOPER)]


def test_llm_records_when_asked_for_are_events_of_the_configured_name(tmp_path: Path, target: RestTarget) -> None:
    llm = {"send": True, "event_name": "LLM_CALL", "event_family": "retention",
           "product": {"id": "bot", "name": "Support bot", "type": "agent"}}
    with running_collector(tokensand_config(tmp_path, target.url, llm=llm)) as collector:
        export(collector.http_url, numbered_llm_spans(3))
        wait_for(lambda: len(target.accepted) == 1)
        records = sorted(collector.records(), key=lambda r: r.occurred_at)
    events = target.accepted[0].body["events"]
    assert [e["idempotencyKey"] for e in events] == [r.idempotency_key for r in records]
    assert [e["developer_id"] for e in events] == ["user-0", "user-1", "user-2"]
    assert {json.dumps({k: v for k, v in e.items() if k not in ("idempotencyKey", "developer_id", "occurredAt")})
            for e in events} == {json.dumps({"event_name": "LLM_CALL", "event_family": "retention",
                                             "product": {"id": "bot", "name": "Support bot", "type": "agent"}})}


def test_events_tokens_and_refuses_are_dead_and_the_rest_not_sent_again(tmp_path: Path,
                                                                         rest_target: Callable[..., RestTarget]) -> None:
    def refuse(event: dict[str, Any]) -> str | None:
        return "account_domain: no account matches" if event["developer_id"] in ("dev-1", "dev-3") else None

    target = tokensand(rest_target(check=check_tokensand), refuse)
    with running_collector(tokensand_config(tmp_path, target.url)) as collector:
        export(collector.http_url, event_spans(5))
        wait_for(lambda: dead_count(collector) == 2)
        by_key = {r.idempotency_key: r for r in collector.records()}
    [request] = target.accepted  # one request: nothing was sent again
    assert len(request.body["events"]) == 5
    dead = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    refused = {e["idempotencyKey"] for e in request.body["events"] if refuse(e)}
    assert sorted(d["record_id"] for d in dead) == sorted(by_key[k].id for k in refused)
    assert {d["reason"] for d in dead} == {
        f"tokens& refused the event ({target.url}{BATCH}): events[{i}].account_domain: no account matches"
        for i in (1, 3)
    }


# --- the status table ---------------------------------------------------------------------------


def claim_of(*records: UsageRecord) -> Claim:
    return Claim("tokensand/crm", list(range(1, len(records) + 1)), False, list(records))


def event_record(i: int, **fields: Any) -> UsageRecord:
    values = {"user_id": f"dev-{i}", **fields}
    return UsageRecord(idempotency_key=f"k{i}", kind="event", type="SDK_INIT", occurred_at=T0, event_name="SDK_INIT",
                       **values)


@pytest.fixture
def exporter(target: RestTarget) -> Iterator[TokensandExporter]:
    made = TokensandExporter("tokensand/crm", TokensandConfig(endpoint=target.url, api_key=API_KEY))
    yield made
    made.close()


ERROR = {"ok": False, "error": "..."}


@pytest.mark.parametrize(("status", "headers", "body", "expected", "said"), [
    (400, {}, {"ok": False, "error": "events: at most 500 events per batch; got 501"}, Dead, "at most 500 events"),
    (422, {}, ERROR, Dead, "HTTP 422"),
    (401, {}, {"ok": False, "error": "Invalid tracking key"}, Paused, "check the exporter's api_key"),
    (403, {}, ERROR, Paused, "check the exporter's api_key"),
    (404, {}, "Not Found", Paused, "check the exporter's endpoint"),
    (402, {"retry-after": "86400"}, ERROR, LongBackoff, "plan limit is reached"),
    (429, {"retry-after": "7"}, ERROR, RetryLater, "HTTP 429"),
    (500, {}, "oops", RetryLater, "HTTP 500"),
    (503, {"retry-after": "3"}, "maintenance", RetryLater, "HTTP 503"),
], ids=lambda v: str(v) if isinstance(v, int) else None)
def test_each_status_of_the_table(target: RestTarget, exporter: TokensandExporter, status: int,
                                  headers: dict[str, str], body: Any, expected: type, said: str) -> None:
    target.answer_next((status, headers, body))
    outcome = exporter.send(claim_of(event_record(1), event_record(2, user_id=None)))
    if expected is Dead:  # the whole batch refused: each record dead, the one tokens& never saw with its reason
        assert isinstance(outcome, Partial) and outcome.done == 2 and outcome.then == Delivered()
        assert outcome.dead[1] == NO_DEVELOPER and said in outcome.dead[0] and f"HTTP {status}" in outcome.dead[0]
    else:
        assert isinstance(outcome, (Paused, LongBackoff, RetryLater)) and isinstance(outcome, expected)
        assert said in outcome.reason
        assert getattr(outcome, "retry_after", None) == (float(headers["retry-after"]) if headers else None)
    assert len(target.requests) == 1


def test_a_target_that_cannot_be_reached_is_retried() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    made = TokensandExporter("tokensand/crm", TokensandConfig(endpoint=url, api_key=API_KEY))
    outcome = made.send(claim_of(event_record(1)))
    made.close()
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith(f"cannot reach {url}{BATCH}")


def test_a_batch_with_nothing_for_tokens_and_sends_no_request(target: RestTarget, exporter: TokensandExporter) -> None:
    meter = UsageRecord(idempotency_key="m", kind="meter", type="api_calls", occurred_at=T0, user_id="dev-1")
    llm = UsageRecord(idempotency_key="l", kind="llm", type="chat", occurred_at=T0, user_id="dev-1")
    assert exporter.send(claim_of(meter, llm)) == Delivered()
    assert target.requests == []


KEY_REFUSED: Answer = (401, {}, {"ok": False, "error": "Invalid tracking key"})
QUOTA: Answer = (402, {}, {"ok": False, "error": "Plan quota used up"})


@pytest.mark.parametrize(("answers", "dead"), [
    ([KEY_REFUSED, KEY_REFUSED], 0),  # paused past max_elapsed_time, then delivered
    ([QUOTA, QUOTA], 0),  # long back-off past max_elapsed_time, then delivered
    ([(503, {"retry-after": "0"}, "maintenance")], 0),  # retried, then delivered
    ([(400, {}, {"ok": False, "error": "events[0].event_name: required"})], 3),  # dead, never sent again
], ids=["paused", "long-backoff", "retried", "dead"])
def test_the_runner_follows_the_table(tmp_path: Path, target: RestTarget, answers: list[Any], dead: int) -> None:
    target.answer_next(*answers)
    retry = {"initial_interval": 0.05, "max_interval": 0.1, "max_elapsed_time": 0.01, "long_interval": 0.1}
    with running_collector(tokensand_config(tmp_path, target.url, retry_on_failure=retry)) as collector:
        export(collector.http_url, event_spans(3))
        wait_for(lambda: len(target.accepted) == 1 or dead_count(collector) == 3)
        assert dead_count(collector) == dead
    assert [r.answer for r in target.requests] == [a[0] for a in answers] + ([202] if not dead else [])
    assert len({tuple(keys(r)) for r in target.requests}) == 1  # a retry sends the same keys
    assert len(json.loads(cli(tmp_path, "deliveries", "list", "--json").output)) == dead


def test_a_2xx_without_the_batch_answer_is_all_accepted(target: RestTarget, exporter: TokensandExporter,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    target.answer_next((202, {}, ""), (200, {}, "OK"))
    assert exporter.send(claim_of(event_record(1))) == Delivered()
    assert exporter.send(claim_of(event_record(2))) == Delivered()
    assert [r.getMessage() for r in caplog.records] == [
        f"exporter tokensand/crm: HTTP 200 from {target.url}{BATCH} lists no refused events; taken as all accepted: OK"
    ]


# --- outage, kill -9 ----------------------------------------------------------------------------


@dataclass
class TokensandCase(Case):
    def target(self) -> RestTarget:
        return tokensand(super().target())


def case(max_batch: int) -> TokensandCase:
    return TokensandCase(
        exporter_id="tokensand/crm",
        settings=lambda url: {"endpoint": url, "api_key": API_KEY, "max_batch": max_batch},
        record_ids=keys,
        check=check_tokensand,
        spans=event_spans,
    )


def test_tokens_and_down_while_1000_records_arrive_then_back_gets_each_key_once(tmp_path: Path) -> None:
    target = outage(tmp_path, case(max_batch=500))
    assert [len(r.body["events"]) for r in target.accepted] == [500, 500]


def test_kill_9_while_delivering_then_restart_sends_each_key_once(tmp_path: Path) -> None:
    target = kill_9_while_delivering(tmp_path, case(max_batch=20))
    assert len(target.accepted) == 15  # the batch held at the kill went out once, after the restart


# --- exporters check, config -------------------------------------------------------------------


def test_exporters_check_sends_one_sample_event_to_the_dry_run(tmp_path: Path, target: RestTarget) -> None:
    checked = cli(tmp_path, "exporters", "check", "tokensand/crm", endpoint=target.url)
    assert checked.exit_code == 0, checked.output
    [request] = target.requests
    assert request.path == DRY_RUN and request.body["event_name"] == "SPANMETER_CHECK"
    assert checked.output.startswith(f"tokensand/crm: ok: HTTP 200 from {target.url}{DRY_RUN}: ")
    assert json.loads(checked.output.split(f"{DRY_RUN}: ", 1)[1])["event"] == request.body  # the answer, printed

    llm = {"send": True, "event_name": "LLM_CALL", "product": {"id": "bot"}}
    assert cli(tmp_path, "exporters", "check", "tokensand/crm", endpoint=target.url, llm=llm).exit_code == 0
    assert {k: target.requests[1].body[k] for k in ("event_name", "product")} == {"event_name": "LLM_CALL",
                                                                                   "product": {"id": "bot"}}

    target.answer_next((400, {}, {"ok": False, "errors": ["product: required for organization keys"]}),
                       (401, {}, {"ok": False, "error": "Invalid tracking key"}))
    refused = cli(tmp_path, "exporters", "check", "tokensand/crm", endpoint=target.url)
    assert refused.exit_code == 1 and "tokensand/crm: refused: HTTP 400" in refused.output
    assert "product: required for organization keys" in refused.output
    refused = cli(tmp_path, "exporters", "check", "tokensand/crm", endpoint=target.url)
    assert refused.exit_code == 1 and "Invalid tracking key" in refused.output and "api_key" in refused.output
    down = cli(tmp_path, "exporters", "check", "tokensand/crm")  # port 9: nobody listens
    assert down.exit_code == 1 and "tokensand/crm: refused: cannot reach http://127.0.0.1:9" in down.output


@pytest.mark.parametrize(("settings", "problem"), [
    ({"max_batch": 501}, "exporters::tokensand/crm::max_batch: Input should be less than or equal to 500"),
    ({"api_key": None}, "exporters::tokensand/crm::api_key"),
    ({"llm": {"send": True, "event_family": "usage"}}, "exporters::tokensand/crm::llm::event_family"),
    ({"llm": {"product": {"category": "x"}}}, "exporters::tokensand/crm::llm::product::category"),
])
def test_bad_settings_are_named(tmp_path: Path, settings: dict[str, Any], problem: str) -> None:
    exporter = {"endpoint": "https://tokensand.example.com", "api_key": API_KEY, **settings}
    if settings.get("api_key", "") is None:
        del exporter["api_key"]
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, exporters={"tokensand/crm": exporter})
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_a_second_spanmeter_with_tokens_and_ingest_stores_each_event_as_sent(tmp_path: Path) -> None:
    """spanmeter's own tokens&-compatible endpoint (a real implementation of the same contract)
    takes every event the exporter sends: the records arrive with the same fields and keys."""
    attributes = {"usage.event.family": "expansion", "usage.user.email": "ada@company.com",
                  "usage.account.domain": "company.com", "usage.source": "docs", "usage.campaign.id": "c-1",
                  "usage.product.id": "p-1", "usage.product.name": "Router", "usage.product.category": "infra"}
    (tmp_path / "b").mkdir()
    with running_collector(make_config(tmp_path / "b")) as receiving:
        checked = cli(tmp_path, "exporters", "check", "tokensand/crm", endpoint=receiving.http_url)
        assert checked.exit_code == 0, checked.output
        assert json.loads(checked.output.split(f"{DRY_RUN}: ", 1)[1])["valid"] is True
        with running_collector(tokensand_config(tmp_path, receiving.http_url)) as sending:
            export(sending.http_url, event_spans(30, attributes))
            sent = sending.records()
            wait_for(lambda: len(receiving.records()) == 30)
        arrived = receiving.records()
    fields = ("idempotency_key", "kind", "event_name", "event_family", "user_id", "email", "account_domain", "source",
              "campaign_id", "occurred_at")
    assert sorted(tuple(getattr(r, f) for f in fields) for r in arrived) == sorted(
        tuple(getattr(r, f) for f in fields) for r in sent
    )
    assert {r.product for r in arrived} == {Product(id="p-1", name="Router")}  # tokens& has no product category
