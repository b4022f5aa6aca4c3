"""Records the `fluxrate` exporter skips (no meter token, no quantity above 0) are never billed:
`spanmeter exporters status` must show them, per reason, with what to configure, from the
database (they outlive the process and its /metrics), each counted once whatever the crashes.
Real collector, real OTel SDK, the fake Fluxrate of tests/exporters/fluxrate_target.py, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Tracer

from spanmeter.cli import main
from tests.conftest import make_config, running_collector
from tests.exporters.fluxrate_target import check_fluxrate, fluxrate, keys, settings
from tests.exporters.harness import FAST, Case, export, kill_9_while_delivering, wait_for
from tests.fakes.rest_target import Answer, RestTarget
from tests.otlp_helpers import T0, llm_attributes, make_spans

NAME = "fluxrate/test"
ACCEPTED: Answer = (202, {}, {"ok": True, "duplicate": False})
NO_TOKEN = "no meter token for 'signup': add signup: <meter token> to meter_tokens to send them"
NO_QUANTITY = "'chat' with quantity 0 or none: Fluxrate only takes quantities above 0"


def chats_and_signups(chats: int, every: int = 4) -> Sequence[ReadableSpan]:
    """`chats` LLM calls (chat: mapped, record i with 1000 + i input tokens) and, after every
    `every`-th one, a `signup` event, which has no meter token."""

    def build(tracer: Tracer) -> None:
        for i in range(chats):
            attributes = llm_attributes(input_tokens=1000 + i, output_tokens=500)
            at = T0 + i * 1_000_000
            with tracer.start_as_current_span(f"chat {i}", kind=SpanKind.CLIENT, attributes=attributes, start_time=at):
                pass
            if i % every == 0:
                with tracer.start_as_current_span("signup", start_time=at + 1) as span:
                    span.set_attribute("usage.event.name", "signup")

    return make_spans(build, {"usage.customer.id": "acme"})


def status(tmp_path: Path, storage: dict[str, Any], *options: str) -> str:
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"storage": storage}))
    result = CliRunner().invoke(main, ["exporters", "status", *options, "-c", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def test_skipped_records_are_in_exporters_status_with_the_fix(
    tmp_path: Path, storage: dict[str, Any], rest_target: Callable[..., RestTarget]
) -> None:
    target = fluxrate(rest_target(check=check_fluxrate, default=ACCEPTED))
    exporter = {**settings(target.url), **FAST}
    config = make_config(tmp_path, storage=storage, exporters={NAME: exporter},
                         service={"pipelines": {"usage": {"exporters": [NAME]}}})
    no_tokens = llm_attributes(input_tokens=0, output_tokens=0)
    failed = make_spans(lambda tracer: tracer.start_span("chat failed", attributes=no_tokens).end(),
                        {"usage.customer.id": "acme"})
    with running_collector(config) as collector:
        export(collector.http_url, [*chats_and_signups(5, every=3), *failed])
        wait_for(lambda: len(target.accepted) == 5, what="the billable records")
        wait_for(lambda: collector.metric("spanmeter_exporter_records_behind", {"exporter": NAME}) == 0)
        [api] = httpx.get(f"{collector.http_url}/api/v1/exporters").json()["exporters"]  # the dashboard's
        on_metrics = {
            reason: collector.metric("spanmeter_exporter_skipped_records_total", {"exporter": NAME, "reason": reason})
            for reason in ("no_meter_token", "no_quantity")
        }
    assert on_metrics == {"no_meter_token": 2, "no_quantity": 1}  # /metrics as before
    [row] = json.loads(status(tmp_path, storage, "--json"))  # the process is gone: from the database
    assert (row["exporter"], row["delivered"], row["skipped"]) == (NAME, 5, 3)
    assert [{k: v for k, v in skip.items() if k != "latest_at"} for skip in row["skips"]] == [
        {"reason": "no_meter_token", "count": 2, "latest": NO_TOKEN},
        {"reason": "no_quantity", "count": 1, "latest": NO_QUANTITY},
    ]
    assert all(skip["latest_at"].startswith("20") for skip in row["skips"])  # an ISO time (UTC)
    assert (api["skipped"], api["skips"]) == (row["skipped"], row["skips"])
    text = status(tmp_path, storage)
    assert f"  {NAME}: 2 no_meter_token; latest: {NO_TOKEN}\n" in text
    assert f"  {NAME}: 1 no_quantity; latest: {NO_QUANTITY}\n" in text


def test_a_kill_9_neither_loses_nor_double_counts_a_skip(tmp_path: Path, storage: dict[str, Any]) -> None:
    """With aggregation, records are summed (or skipped) in the exporter's state file before the
    outbox moves past them: killed in between, the restarted process hands them out again, and
    their skips are counted then, once."""
    aggregation = {"enabled": True, "window": 1.0, "grace": 1.0, "state_path": str(tmp_path / "windows.db")}
    case = Case(
        exporter_id=NAME,
        settings=lambda url: settings(url, aggregation=aggregation),
        record_ids=keys,
        check=check_fluxrate,
        default=ACCEPTED,
        spans=chats_and_signups,  # chats of 2025: too late for a window, each is sent on its own
    )
    kill_9_while_delivering(tmp_path, case, count=40, accepted_before=6, storage=storage)
    [row] = json.loads(status(tmp_path, storage, "--json"))
    assert (row["delivered"], row["skipped"]) == (40, 10)
    assert [(skip["reason"], skip["count"]) for skip in row["skips"]] == [("no_meter_token", 10)]
