"""The webhook exporter end to end: the real OTel SDK exports spans to a running spanmeter, which
sends the stored records to a real HTTP receiver on 127.0.0.1 that checks each request against
the contract (tests/fakes/webhook_receiver.py): signatures, payload, item shape.

What a user depends on: every stored record reaches the receiver exactly once (retries carry the
same webhook-id), nothing is lost while the receiver is down, refused or restarting, and records
given up on are listed and can be sent again from the CLI.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Tracer

from spanmeter.cli import main
from tests.conftest import RunningCollector, make_config, running_collector
from tests.exporters.harness import Case, kill_9_while_delivering, outage
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.otlp_helpers import llm_spans, make_spans

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(secret=SECRET).start()
    yield started
    started.stop()
    assert started.violations == []


def webhook_config(tmp_path: Path, url: str, name: str = "webhook/billing", **settings: Any) -> Any:
    exporter = {
        "endpoint": url,
        "secret": SECRET,
        "flush_interval": 0.05,
        "max_batch": 10,
        "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.2},
        **settings,
    }
    return make_config(
        tmp_path,
        exporters={name: exporter},
        service={"pipelines": {"usage": {"exporters": [name]}}},
    )


def send_llm_spans(collector: RunningCollector, count: int, customer: str = "acme") -> None:
    exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces")
    assert exporter.export(llm_spans(count, customer=customer)) == SpanExportResult.SUCCESS
    exporter.shutdown()


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def cli(tmp_path: Path, *args: str) -> Any:
    config = tmp_path / "spanmeter.yaml"
    config.write_text(f"storage:\n  sqlite:\n    path: {tmp_path / 'spanmeter.db'}\n")
    return CliRunner().invoke(main, [*args, "-c", str(config)])


def test_every_stored_record_is_delivered_once_signed(tmp_path: Path, receiver: WebhookReceiver) -> None:
    with running_collector(webhook_config(tmp_path, receiver.url)) as collector:
        send_llm_spans(collector, 25)
        stored = collector.records()
        wait_for(lambda: len(receiver.accepted_records()) >= 25)
        time.sleep(0.2)  # nothing more arrives
        delivered = receiver.accepted_records()
        assert sorted(r["id"] for r in delivered) == sorted(r.id for r in stored)
        assert len(receiver.accepted) == 3  # max_batch 10: 10 + 10 + 5
        by_id = {r.id: r for r in stored}
        for item in delivered:
            record = by_id[item["id"]]
            assert item["idempotencyKey"] == record.idempotency_key
            assert item["inputTokens"] == record.input_tokens == 1000
            assert item["costUsd"] == str(record.cost_usd)
        assert {m.exporter for m in receiver.accepted} == {"webhook/billing"}
        assert collector.metric("spanmeter_exported_records_total", {"exporter": "webhook/billing", "outcome": "delivered"}) == 25


def test_receiver_down_then_up_loses_nothing_and_retries_the_same_message(
    tmp_path: Path, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spanmeter.exporters.runner")
    receiver.answer_next((503, {"retry-after": "0"}, "maintenance"), (500, {}, "oops"), (429, {}, "slow down"))
    with running_collector(webhook_config(tmp_path, receiver.url)) as collector:
        send_llm_spans(collector, 5)
        wait_for(lambda: len(receiver.accepted_records()) == 5)
        attempts = receiver.messages
        assert [m.answer for m in attempts] == [503, 500, 429, 200]
        assert len({m.id for m in attempts}) == 1  # one batch, one webhook-id across its retries
        assert collector.metric("spanmeter_export_failures_total", {"exporter": "webhook/billing"}) == 3
    recovered = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and "delivering again" in r.getMessage()]
    assert recovered == ["exporter webhook/billing: delivering again: 5 records delivered after 3 failed attempts"]


def test_a_refused_batch_is_dead_listed_and_sent_again_from_the_cli(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer_next((400, {}, '{"error": "unknown customer acme"}'))
    config = webhook_config(tmp_path, receiver.url, max_batch=100)
    with running_collector(config) as collector:
        send_llm_spans(collector, 4, customer="acme")
        wait_for(lambda: collector.metric("spanmeter_exported_records_total",
                                          {"exporter": "webhook/billing", "outcome": "dead"}) == 4)
        send_llm_spans(collector, 3, customer="globex")  # the records behind a dead batch still go out
        wait_for(lambda: len(receiver.accepted_records()) == 3)
        assert {r["customerId"] for r in receiver.accepted_records()} == {"globex"}

        listed = cli(tmp_path, "deliveries", "list", "--json")
        assert listed.exit_code == 0, listed.output
        dead = json.loads(listed.output)
        assert len(dead) == 4
        assert {d["customer_id"] for d in dead} == {"acme"}
        assert all("HTTP 400" in d["reason"] and "unknown customer acme" in d["reason"] for d in dead)

        one = dead[0]["record_id"]
        retried = cli(tmp_path, "deliveries", "retry", one)
        assert retried.exit_code == 0, retried.output
        assert "1 deliveries will be sent again by webhook/billing" in retried.output
        wait_for(lambda: len(receiver.accepted_records()) == 4)
        assert receiver.accepted_records()[-1]["id"] == one

        retried = cli(tmp_path, "deliveries", "retry", "--all")
        assert retried.exit_code == 0, retried.output
        wait_for(lambda: len(receiver.accepted_records()) == 7)
        assert sorted(r["id"] for r in receiver.accepted_records()) == sorted(r.id for r in collector.records())
        assert json.loads(cli(tmp_path, "deliveries", "list", "--json").output) == []

    nothing = cli(tmp_path, "deliveries", "retry", "--all")
    assert nothing.exit_code == 1 and "no dead delivery matched" in nothing.output
    both = cli(tmp_path, "deliveries", "retry", "--all", "some-id")
    assert both.exit_code == 2 and "not both" in both.output


def test_refused_credentials_pause_the_exporter_without_dead_records(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer_next((401, {}, "bad signature"), (401, {}, "bad signature"))
    config = webhook_config(tmp_path, receiver.url, retry_on_failure={"initial_interval": 0.05, "max_interval": 0.2,
                                                                       "max_elapsed_time": 0.01})
    with running_collector(config) as collector:
        send_llm_spans(collector, 3)
        wait_for(lambda: len(receiver.accepted_records()) == 3)
        assert [m.answer for m in receiver.messages] == [401, 401, 200]
        assert collector.metric("spanmeter_exported_records_total", {"exporter": "webhook/billing", "outcome": "dead"}) == 0


def test_a_receiver_that_stays_down_past_max_elapsed_time_makes_dead_deliveries(tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/hooks/usage"
    config = webhook_config(tmp_path, url, retry_on_failure={"initial_interval": 0.05, "max_interval": 0.1,
                                                             "max_elapsed_time": 0.3})
    with running_collector(config) as collector:
        send_llm_spans(collector, 2)
        wait_for(lambda: collector.metric("spanmeter_exported_records_total",
                                          {"exporter": "webhook/billing", "outcome": "dead"}) == 2)
    dead = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert len(dead) == 2
    assert all(d["reason"].startswith("gave up after") and "cannot reach" in d["reason"] for d in dead)
    assert all(int(d["attempts"]) >= 2 for d in dead)


def test_pending_records_survive_a_restart_and_go_out_once(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer_next(*[(503, {}, "down")] * 1000)
    config = webhook_config(tmp_path, receiver.url, retry_on_failure={"initial_interval": 0.05, "max_interval": 0.1,
                                                                      "max_elapsed_time": 0})
    with running_collector(config) as collector:
        send_llm_spans(collector, 12)
        stored = sorted(r.id for r in collector.records())
        wait_for(lambda: len(receiver.messages) >= 3)
    with receiver.lock:
        first_id = receiver.messages[0].id
        receiver.script.clear()
    status = cli(tmp_path, "exporters", "status", "--json")
    [state] = json.loads(status.output)
    # One picture of the batch waiting for its retry: behind, pending_retry and the pending list agree.
    assert state["exporter"] == "webhook/billing" and state["behind"] == 12 and state["pending_retry"] == 10
    assert state["last_error"] == f"HTTP 503 from {receiver.url}: down"  # whole in JSON, the URL not cut
    assert state["attempts"] >= 3 and state["configured"] is False and state["dead"] == 0
    pending = json.loads(cli(tmp_path, "deliveries", "list", "--state", "pending", "--json").output)
    assert len(pending) == 10 and {d["record_id"] for d in pending} <= set(stored)
    assert {(d["state"], d["attempts"], d["reason"]) for d in pending} == {
        ("pending", state["attempts"], state["last_error"])
    }
    table = cli(tmp_path, "deliveries", "list", "--state", "pending").output.splitlines()
    assert len(table) == 11 and "HTTP 503" in table[1]
    with running_collector(config):
        wait_for(lambda: len(receiver.accepted_records()) == 12)
        time.sleep(0.2)
    assert sorted(r["id"] for r in receiver.accepted_records()) == stored
    assert receiver.accepted[0].id == first_id  # the batch in hand before the restart, same webhook-id
    [state] = json.loads(cli(tmp_path, "exporters", "status", "--json").output)
    assert (state["behind"], state["attempts"], state["pending_retry"], state["last_error"]) == (0, 0, 0, None)
    assert cli(tmp_path, "deliveries", "list", "--state", "pending").output.strip() == "no pending deliveries"


def test_filter_sends_only_matching_records(tmp_path: Path, receiver: WebhookReceiver) -> None:
    def build(tracer: Tracer) -> None:
        for name in ("signup", "plan_upgraded"):
            with tracer.start_as_current_span(name, attributes={"usage.event.name": name}):
                pass

    config = webhook_config(tmp_path, receiver.url, filter={"kinds": ["event"], "customers": ["globex"]})
    with running_collector(config) as collector:
        send_llm_spans(collector, 5, customer="globex")
        exporter = HttpExporter(endpoint=f"{collector.http_url}/v1/traces")
        for customer in ("acme", "globex"):
            assert exporter.export(make_spans(build, {"usage.customer.id": customer})) == SpanExportResult.SUCCESS
        exporter.shutdown()
        wait_for(lambda: len(receiver.accepted_records()) == 2)
        time.sleep(0.2)
        delivered = receiver.accepted_records()
        assert {(r["kind"], r["customerId"], r["type"]) for r in delivered} == {
            ("event", "globex", "signup"), ("event", "globex", "plan_upgraded")
        }
    [state] = json.loads(cli(tmp_path, "exporters", "status", "--json").output)
    assert state["behind"] == 0  # past the records the filter skips too


def test_start_at_now_skips_older_records_and_beginning_sends_them(tmp_path: Path, receiver: WebhookReceiver) -> None:
    with running_collector(make_config(tmp_path)) as collector:  # no exporter yet
        send_llm_spans(collector, 3)
    with running_collector(webhook_config(tmp_path, receiver.url, name="webhook/new")) as collector:
        send_llm_spans(collector, 2, customer="later")
        wait_for(lambda: len(receiver.accepted_records()) == 2)
        time.sleep(0.2)
        assert {r["customerId"] for r in receiver.accepted_records()} == {"later"}
    with running_collector(webhook_config(tmp_path, receiver.url, name="webhook/all", start_at="beginning")):
        wait_for(lambda: len(receiver.accepted_records()) == 7)
    assert {m.exporter for m in receiver.accepted} == {"webhook/new", "webhook/all"}


def test_an_exporter_in_no_pipeline_is_not_started(tmp_path: Path, receiver: WebhookReceiver,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, exporters={"webhook/idle": {"endpoint": receiver.url}})
    with running_collector(config) as collector:
        send_llm_spans(collector, 2)
        time.sleep(0.3)
    assert receiver.messages == []
    assert "exporter webhook/idle is configured but in no service::pipelines entry" in caplog.text


def test_the_cli_tables_for_operators(tmp_path: Path, receiver: WebhookReceiver) -> None:
    assert cli(tmp_path, "keys", "create").exit_code == 0  # a database where no exporter has run yet
    assert cli(tmp_path, "exporters", "status").output.strip() == "no exporter has run on this database yet"
    assert cli(tmp_path, "deliveries", "list").output.strip() == "no dead deliveries"
    receiver.answer_next((422, {}, "bad " + "x" * 500))
    with running_collector(webhook_config(tmp_path, receiver.url)) as collector:
        send_llm_spans(collector, 2)
        wait_for(lambda: collector.metric("spanmeter_exported_records_total",
                                          {"exporter": "webhook/billing", "outcome": "dead"}) == 2)
    status = cli(tmp_path, "exporters", "status").output.splitlines()
    assert status[0].split() == ["exporter", "configured", "sent_through_seq", "behind", "attempts", "next_attempt",
                                 "pending_retry", "dead", "delivered", "retried", "oldest_pending_seconds",
                                 "last_error"]
    assert status[1].split()[:7] == ["webhook/billing", "no", "2", "0", "0", "-", "0"]  # cli's config has no exporter
    assert status[1].split()[7] == "2" and status[1].endswith("…")  # the long error cut, and shown to be
    listed = cli(tmp_path, "deliveries", "list").output.splitlines()
    assert listed[0].split()[:3] == ["exporter", "record_id", "customer_id"] and len(listed) == 3
    assert "HTTP 422" in listed[1] and len(listed[1]) < 400 and listed[1].endswith("…")  # cut in the table
    [dead, _] = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert dead["reason"].endswith("x" * 100) and dead["attempts"] == 1 and dead["state"] == "dead"  # typed, whole


def test_a_receiver_slower_than_the_timeout_gets_the_batch_again_with_the_same_id(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.slow, receiver.delay = 1, 1.0  # answers the first request after the exporter gave up on it
    with running_collector(webhook_config(tmp_path, receiver.url, timeout=0.2)) as collector:
        send_llm_spans(collector, 3)
        wait_for(lambda: len(receiver.messages) == 2)
        assert collector.metric("spanmeter_export_failures_total", {"exporter": "webhook/billing"}) == 1
    first, second = receiver.messages
    # At-least-once: the receiver saw the batch twice, and de-duplicates on webhook-id.
    assert first.id == second.id and first.records == second.records


WEBHOOK_CASE = Case(
    exporter_id="webhook/billing",
    settings=lambda url: {"endpoint": f"{url}/hooks/usage", "secret": SECRET, "max_batch": 20},
    record_ids=lambda request: [item["id"] for item in request.body["data"]["records"]],
    check=lambda request: WebhookReceiver(secret=SECRET).check(request.headers, request.raw, request.method,
                                                                request.path)[0],
)


def test_receiver_down_while_1000_records_arrive_then_back_gets_each_once(tmp_path: Path) -> None:
    target = outage(tmp_path, WEBHOOK_CASE)
    ids = [r.headers["webhook-id"] for r in target.accepted]
    assert len(ids) == len(set(ids)) == 50  # batches of 20


def test_kill_9_while_delivering_then_restart_sends_each_record_once(tmp_path: Path) -> None:
    target = kill_9_while_delivering(tmp_path, WEBHOOK_CASE)
    assert len(target.accepted) == 15  # batches of 20; the one held at the kill went out once, after it
