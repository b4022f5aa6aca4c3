"""The spryngtime exporter against a fake Spryngtime trackUsage endpoint (a real HTTP server on
127.0.0.1) that checks every request against the contract: the configured URL, the Bearer key,
one message per request with only trackUsage's fields and their types.

What a user depends on: each LLM call is one message for its customer, billed once through
outages and a kill -9; the prompt text leaves spanmeter only when both content capture and the
exporter's send_query are on; each answer of the status table is handled as documented.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.trace import SpanKind, Tracer

from spanmeter.cli import main
from spanmeter.exporters.base import Delivered
from tests.conftest import make_config, running_collector
from tests.exporters.harness import Case, export, wait_for
from tests.exporters.keyless import (
    COUNT,
    STRING,
    STRINGS,
    KeylessTypeTests,
    assert_config_problem,
    contract_problem,
    exporter_for,
    json_object,
    llm_record,
    send_one,
)
from tests.fakes.rest_target import Request, RestTarget
from tests.otlp_helpers import T0, llm_attributes, make_spans

KEY = "st_test_key"
PATH = "/api/usage-tracking/track-usage"
USAGE = {"prompt_tokens": COUNT, "completion_tokens": COUNT, "total_tokens": COUNT}
SHAPE = {
    "key": STRING,
    "usage": json_object(USAGE),
    "conversationId": STRING,
    "tags": STRINGS,
    "query": STRING,
}


def check_spryngtime(request: Request) -> str | None:
    return contract_problem(request, PATH, ("authorization", f"Bearer {KEY}"), SHAPE, {"key", "usage"})


CASE = Case(
    exporter_id="spryngtime/billing",
    settings=lambda url: {"endpoint": f"{url}{PATH}", "api_key": KEY},
    record_ids=lambda request: [str(request.body["usage"]["prompt_tokens"])],
    check=check_spryngtime,
    default=(200, {}, {"ok": True}),
)


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return rest_target(check=CASE.check, default=CASE.default)


def run(tmp_path: Path, target: RestTarget, build: Callable[[Tracer], None], count: int, capture: bool,
        **settings: Any) -> list[dict[str, Any]]:
    """Spans from `build` through a collector to the target: the bodies of the `count` messages."""
    tmp_path.mkdir(exist_ok=True)
    config = make_config(
        tmp_path,
        exporters={CASE.exporter_id: {**CASE.config(target.url), **settings}},
        processors={"usage": {"content_capture": capture}},
        service={"pipelines": {"usage": {"exporters": [CASE.exporter_id]}}},
    )
    with running_collector(config) as collector:
        export(collector.http_url, make_spans(build, {"usage.customer.id": "acme"}))
        wait_for(lambda: len(target.accepted) == count)
        assert collector.records(kind="event") != []  # stored, not sent
    return sorted((r.body for r in target.accepted), key=lambda b: b["usage"]["prompt_tokens"])


def calls_and_an_event(tracer: Tracer) -> None:
    for i in range(2):
        attributes = {**llm_attributes(input_tokens=100 + i), "gen_ai.prompt": f"question {i}"}
        if i == 0:
            attributes["gen_ai.conversation.id"] = "conv-1"
        with tracer.start_as_current_span(f"chat {i}", kind=SpanKind.CLIENT, attributes=attributes, start_time=T0 + i):
            pass
    with tracer.start_as_current_span("signup", attributes={"usage.event.name": "signup"}):
        pass  # a product event: not a message


def test_each_llm_call_is_one_message_of_its_customer_without_the_prompt(tmp_path: Path, target: RestTarget) -> None:
    # Content capture on, the exporter's send_query off (the default): the prompt stays here.
    assert run(tmp_path, target, calls_and_an_event, 2, capture=True) == [
        {"key": "acme", "usage": {"prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 600},
         "conversationId": "conv-1"},
        {"key": "acme", "usage": {"prompt_tokens": 101, "completion_tokens": 500, "total_tokens": 601}},
    ]


def test_the_query_is_sent_only_with_content_capture_and_send_query(tmp_path: Path, target: RestTarget) -> None:
    sent = run(tmp_path / "on", target, calls_and_an_event, 2, capture=True, send_query=True)
    assert [b["query"] for b in sent] == ["question 0", "question 1"]
    with target.lock:
        target.requests.clear()
    sent = run(tmp_path / "off", target, calls_and_an_event, 2, capture=False, send_query=True)
    assert ["query" in b for b in sent] == [False, False]  # the records hold no prompt


def test_a_record_without_customer_is_dead_until_default_key_is_set_and_retried(
    tmp_path: Path, target: RestTarget
) -> None:
    def build(tracer: Tracer) -> None:
        for i, customer in enumerate((None, "acme")):
            attributes = {**llm_attributes(input_tokens=100 + i), **({"usage.customer.id": customer} if customer else {})}
            with tracer.start_as_current_span(f"chat {i}", kind=SpanKind.CLIENT, attributes=attributes, start_time=T0 + i):
                pass

    def config(**settings: Any) -> Any:
        return make_config(tmp_path, exporters={CASE.exporter_id: {**CASE.config(target.url), **settings}},
                           service={"pipelines": {"usage": {"exporters": [CASE.exporter_id]}}})

    def cli(*args: str) -> Any:
        (tmp_path / "cli.yaml").write_text(json.dumps({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
        return CliRunner().invoke(main, [*args, "-c", str(tmp_path / "cli.yaml")])

    with running_collector(config()) as collector:
        export(collector.http_url, make_spans(build))
        wait_for(lambda: collector.metric("spanmeter_exporter_dead_deliveries", {"exporter": CASE.exporter_id}) == 1)
        wait_for(lambda: len(target.accepted) == 1)  # the next record went on
    [dead] = json.loads(cli("deliveries", "list", "--json").output)
    assert "no customer id for Spryngtime's `key`" in dead["reason"] and "default_key" in dead["reason"]
    assert cli("deliveries", "retry", "--all").exit_code == 0
    with running_collector(config(default_key="house")):
        wait_for(lambda: len(target.accepted) == 2)
    assert [r.body["key"] for r in target.accepted] == ["acme", "house"]


def test_usage_holds_only_the_counts_the_record_has_and_tags_go_along(target: RestTarget) -> None:
    embedding = llm_record(type="embeddings", operation="embeddings", output_tokens=None, total_tokens=1200,
                           tags=["search", "fr"], query="not sent: send_query is off")
    with exporter_for(CASE, target.url) as exporter:
        assert send_one(exporter, embedding) == Delivered()
        assert send_one(exporter, llm_record(kind="event", type="signup", event_name="signup")) == Delivered()
    [message] = target.accepted  # the event was skipped, not sent
    assert message.body == {"key": "acme", "usage": {"prompt_tokens": 1200, "total_tokens": 1200},
                            "tags": ["search", "fr"]}


class TestSpryngtime(KeylessTypeTests):
    CASE = CASE


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"endpoint": "spryngtime.example.com/track"}, "exporters::spryngtime/a::endpoint: expected an http(s) URL"),
        ({"default_key": ""}, "exporters::spryngtime/a::default_key"),
        ({"send_query": "maybe"}, "exporters::spryngtime/a::send_query"),
    ],
)
def test_bad_config_names_the_key(settings: dict[str, Any], problem: str) -> None:
    assert_config_problem("spryngtime/a", {"endpoint": "http://x/t", "api_key": KEY, **settings}, problem)
