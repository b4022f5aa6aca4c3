"""The shared exporter machinery with a test-only exporter type ("probe"): one record per request
(exporters/per_record.py), the status table, Partial outcomes, the long back-off of 402, `exporters
check`, and the per-exporter figures of /metrics and `exporters status`.

What a user of a target without idempotency keys depends on: a record the target accepted is never
sent again, whether the next one fails, the process restarts, or a 402 holds the rest for hours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import Field

from spanmeter.cli import main
from spanmeter.exporters import registry
from spanmeter.exporters.base import CheckResult, Delivered, Outcome, Partial
from spanmeter.exporters.per_record import PerRecordExporter
from spanmeter.exporters.policy import REST_TABLE, StatusPolicy
from spanmeter.exporters.settings import HttpExporterConfig
from spanmeter.record import UsageRecord
from spanmeter.store.outbox import Claim, holder_is_gone, new_owner
from tests.conftest import RunningCollector, make_config, running_collector
from tests.exporters.harness import FAST, export, numbered_llm_spans, wait_for
from tests.fakes.rest_target import Request, RestTarget

OK = (201, {}, {"ok": True})


class ProbeConfig(HttpExporterConfig):
    api_key: str = Field("k", description="Bearer key")
    checkable: bool = Field(False, description="offer `exporters check`")


class ProbeExporter(PerRecordExporter):
    path = "/track"
    policy = StatusPolicy({**REST_TABLE}, hints={401: "check the exporter's api_key"})

    def body(self, record: UsageRecord) -> dict[str, Any] | None:
        return {"tokens": record.input_tokens, "customer": record.customer_id}


class CheckableProbe(ProbeExporter):
    def check(self) -> CheckResult:
        answer = self.post({"tokens": 0, "customer": "sample"})
        return CheckResult(isinstance(answer, Delivered), str(answer))


class BatchProbe:
    """A batch type whose target answers per record: records at odd indexes are refused."""

    item_of = None

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, claim: Claim) -> Outcome:
        return Partial(len(claim.seqs), Delivered(), {i: f"record {i} refused" for i in range(1, len(claim.seqs), 2)})

    def close(self) -> None:
        pass


def create(name: str, config: ProbeConfig) -> ProbeExporter:
    kind = CheckableProbe if config.checkable else ProbeExporter
    return kind(name, config.endpoint, headers={"authorization": f"Bearer {config.api_key}"}, timeout=config.timeout)


@pytest.fixture(autouse=True)
def probe_types(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.exporter_types()  # discovered first, so that the test types are only added, then removed
    monkeypatch.setitem(registry._types, "probe", registry.ExporterType("probe", ProbeConfig, create))
    batch = registry.ExporterType("batchprobe", ProbeConfig, lambda name, _: BatchProbe(name))
    monkeypatch.setitem(registry._types, "batchprobe", batch)


def check_probe(request: Request) -> str | None:
    if (request.method, request.path) != ("POST", "/track"):
        return "expected POST /track"
    if request.headers.get("authorization") != "Bearer k" or request.headers.get("content-type") != "application/json":
        return f"headers {request.headers}"
    if not isinstance(request.body, dict) or set(request.body) != {"tokens", "customer"}:
        return f"body {request.body!r}"
    return None


def tokens(request: Request) -> list[str]:
    return [str(request.body["tokens"])]


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return rest_target(check=check_probe, default=OK)


def probe_config(tmp_path: Path, url: str, exporter_id: str = "probe/a", **settings: Any) -> Any:
    exporter = {"endpoint": url, **FAST, **settings}
    return make_config(
        tmp_path, exporters={exporter_id: exporter}, service={"pipelines": {"usage": {"exporters": [exporter_id]}}}
    )


def cli(tmp_path: Path, *args: str, exporters: dict[str, Any] | None = None) -> Any:
    config = tmp_path / "cli.yaml"
    raw: dict[str, Any] = {"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}
    if exporters:
        raw["exporters"] = exporters
    config.write_text(json.dumps(raw))
    return CliRunner().invoke(main, [*args, "-c", str(config)])


def metric(collector: RunningCollector, name: str) -> float:
    return collector.metric(name, {"exporter": "probe/a"})


def test_records_accepted_before_a_failure_are_never_sent_again(tmp_path: Path, target: RestTarget) -> None:
    target.answer_next(OK, OK, OK, (503, {"retry-after": "0"}, "busy"), OK, (500, {}, "oops"))
    with running_collector(probe_config(tmp_path, target.url)) as collector:
        export(collector.http_url, numbered_llm_spans(10))
        wait_for(lambda: len(target.accepted) == 10)
        assert metric(collector, "spanmeter_export_failures_total") == 2
    assert len(target.requests) == 12  # 10 records, 2 of them tried twice
    assert set(target.counts(tokens).values()) == {1}
    [state] = json.loads(cli(tmp_path, "exporters", "status", "--json").output)
    assert (state["delivered"], state["retried"], state["behind"], state["oldest_pending_seconds"]) == (10, 2, 0, None)


def test_a_restart_resumes_after_the_last_accepted_record(tmp_path: Path, target: RestTarget) -> None:
    target.answer_next(OK, OK, OK, *[(503, {}, "down")] * 1000)
    config = probe_config(tmp_path, target.url, retry_on_failure={"initial_interval": 0.05, "max_interval": 0.1,
                                                                   "max_elapsed_time": 0})
    with running_collector(config) as collector:
        export(collector.http_url, numbered_llm_spans(10))
        wait_for(lambda: len(target.requests) >= 6)
        assert metric(collector, "spanmeter_exporter_records_behind") == 7
        assert metric(collector, "spanmeter_exporter_oldest_pending_seconds") > 0
    with target.lock:
        target.script.clear()
    [state] = json.loads(cli(tmp_path, "exporters", "status", "--json").output)
    assert state["behind"] == 7 and state["delivered"] == 3 and state["oldest_pending_seconds"] > 0
    with running_collector(config) as collector:
        wait_for(lambda: len(target.accepted) == 10)
        # The target has the last record a moment before spanmeter commits its progress.
        wait_for(lambda: metric(collector, "spanmeter_exporter_records_behind") == 0)
        assert metric(collector, "spanmeter_exporter_oldest_pending_seconds") == 0
    assert set(target.counts(tokens).values()) == {1} and len(target.counts(tokens)) == 10


def test_a_refused_record_is_dead_and_the_next_ones_go_on(tmp_path: Path, target: RestTarget) -> None:
    target.answer_next(OK, (400, {}, {"ok": False, "error": "Invalid payload"}))
    with running_collector(probe_config(tmp_path, target.url)) as collector:
        export(collector.http_url, numbered_llm_spans(4))
        wait_for(lambda: len(target.requests) == 4)
        wait_for(lambda: metric(collector, "spanmeter_exporter_dead_deliveries") == 1)
    [dead] = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert "HTTP 400" in dead["reason"] and "Invalid payload" in dead["reason"]
    assert sorted(target.counts(tokens)) == ["1000", "1002", "1003"]


def test_402_waits_long_and_never_makes_records_dead(tmp_path: Path, target: RestTarget,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # max_elapsed_time is shorter than the long back-off: the 503 after it must start a fresh clock
    target.answer_next((402, {}, {"ok": False, "error": "Free plan quota exceeded"}), (503, {}, "busy"))
    retry = {"initial_interval": 0.05, "max_interval": 0.1, "max_elapsed_time": 0.2, "long_interval": 0.4}
    with running_collector(probe_config(tmp_path, target.url, retry_on_failure=retry)) as collector:
        export(collector.http_url, numbered_llm_spans(2))
        wait_for(lambda: len(target.accepted) == 2)
        assert metric(collector, "spanmeter_exporter_dead_deliveries") == 0
    assert [r.answer for r in target.requests] == [402, 503, 201, 201]
    assert "the target asks to come back later: trying again in 0 s (the records are kept)" in caplog.text


def test_refused_credentials_pause_with_a_loud_log(tmp_path: Path, target: RestTarget,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    target.answer_next((401, {}, {"ok": False, "error": "Invalid API key"}))
    retry = {"initial_interval": 0.05, "max_interval": 0.1, "max_elapsed_time": 0.01}
    with running_collector(probe_config(tmp_path, target.url, retry_on_failure=retry)) as collector:
        export(collector.http_url, numbered_llm_spans(1))
        wait_for(lambda: len(target.accepted) == 1)
        assert metric(collector, "spanmeter_exporter_dead_deliveries") == 0
    assert [r.answer for r in target.requests] == [401, 201]
    assert any(r.levelname == "ERROR" and "paused" in r.message and "check the exporter's api_key" in r.message
               for r in caplog.records)


def test_a_batch_target_may_refuse_single_records(tmp_path: Path, target: RestTarget) -> None:
    with running_collector(probe_config(tmp_path, target.url, exporter_id="batchprobe/a")) as collector:
        export(collector.http_url, numbered_llm_spans(5))
        labels = {"exporter": "batchprobe/a", "outcome": "delivered"}
        wait_for(lambda: collector.metric("spanmeter_exported_records_total", labels) == 3)
        assert collector.metric("spanmeter_exported_records_total", {**labels, "outcome": "dead"}) == 2
    dead = json.loads(cli(tmp_path, "deliveries", "list", "--json").output)
    assert sorted(d["reason"] for d in dead) == ["record 1 refused", "record 3 refused"]


def test_exporters_check_runs_the_types_check(tmp_path: Path, target: RestTarget) -> None:
    exporters = {"probe/ok": {"endpoint": target.url, "checkable": True},
                 "probe/plain": {"endpoint": target.url},
                 "webhook/w": {"endpoint": f"{target.url}/hooks"}}
    checked = cli(tmp_path, "exporters", "check", "probe/ok", exporters=exporters)
    assert checked.exit_code == 0 and checked.output.startswith("probe/ok: ok: ")
    target.answer_next((401, {}, {"ok": False, "error": "Invalid API key"}))
    refused = cli(tmp_path, "exporters", "check", "probe/ok", exporters=exporters)
    assert refused.exit_code == 1 and "probe/ok: refused: " in refused.output and "Invalid API key" in refused.output
    for name, kind in (("probe/plain", "probe"), ("webhook/w", "webhook")):
        none = cli(tmp_path, "exporters", "check", name, exporters=exporters)
        assert none.exit_code == 1 and f"the {kind} exporter type has no check" in none.output
    missing = cli(tmp_path, "exporters", "check", "probe/nope", exporters=exporters)
    assert missing.exit_code == 1 and "no exporter 'probe/nope' in the config (configured: probe/ok" in missing.output
    assert len(target.requests) == 2  # only the checks reached the target


def test_a_lease_of_a_killed_process_of_this_machine_is_taken_at_once() -> None:
    assert not holder_is_gone(new_owner())  # this process
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    gone = new_owner().rsplit("/", 1)[0] + f"/{child}"
    assert holder_is_gone(gone)
    assert not holder_is_gone(gone.replace("@", "@other-host"))  # elsewhere: wait the lease out
    assert not holder_is_gone("a")

