"""The two whole-process tests every exporter type needs, against its fake target (a RestTarget).

    CASE = Case(
        exporter_id="llmtrack/test",
        settings=lambda url: {"endpoint": url, "api_key": "lt_test"},
        record_ids=lambda request: [str(request.body["prompt_tokens"])],
        check=check_llmtrack,                       # the target's contract, per request
        default=(201, {}, {"ok": True, "consumption_source": "included"}),
    )

    def test_outage(tmp_path: Path) -> None:
        outage(tmp_path, CASE)

    def test_kill_9(tmp_path: Path) -> None:
        kill_9_while_delivering(tmp_path, CASE)

`record_ids` names what identifies each record in an accepted request (an idempotency key, a
record id, or for a target whose body has neither, a value the spans make distinct: by default
`numbered_llm_spans` gives record i `1000 + i` input tokens). Both tests assert that every record
arrived exactly once and that no request broke the target's contract.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Tracer

from tests.conftest import make_config, running_collector
from tests.fakes.rest_target import Answer, Check, Request, RestTarget
from tests.otlp_helpers import T0, llm_attributes, make_spans
from tests.test_crash import free_port, start_server

FAST = {"flush_interval": 0.05, "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.2}}


def numbered_llm_spans(count: int, first: int = 0, customer: str = "acme") -> Sequence[ReadableSpan]:
    """`count` LLM call spans; record i has 1000 + i input tokens, user user-<i % 3>, conversation
    conv-<i % 2>, so a target that receives neither id nor key can still tell the records apart."""

    def build(tracer: Tracer) -> None:
        for i in range(first, first + count):
            attributes = llm_attributes(input_tokens=1000 + i, output_tokens=500)
            with tracer.start_as_current_span(
                f"chat {i}", kind=SpanKind.CLIENT, attributes=attributes, start_time=T0 + i * 1_000_000
            ) as span:
                span.set_attribute("user.id", f"user-{i % 3}")
                span.set_attribute("gen_ai.conversation.id", f"conv-{i % 2}")

    return make_spans(build, {"usage.customer.id": customer})


@dataclass
class Case:
    exporter_id: str  # type/name
    settings: Callable[[str], dict[str, Any]]  # the target's base URL -> the exporter's config
    record_ids: Callable[[Request], Iterable[str]]  # what identifies each record in an accepted request
    check: Check | None = None
    default: Answer = (200, {}, "")
    spans: Callable[[int], Sequence[ReadableSpan]] = numbered_llm_spans  # count -> one record each
    extra_config: dict[str, Any] = field(default_factory=dict)  # merged into the whole config

    def config(self, url: str) -> dict[str, Any]:
        return {**self.settings(url), **FAST}

    def target(self) -> RestTarget:
        return RestTarget(check=self.check, default=self.default).start()


def wait_for(condition: Callable[[], bool], seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting {what}")
        time.sleep(0.02)


def export(http_url: str, spans: Sequence[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{http_url}/v1/traces")
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def assert_each_once(target: RestTarget, case: Case, count: int) -> None:
    counts = target.counts(case.record_ids)
    assert target.violations == []
    assert [i for i, n in counts.items() if n > 1] == [], "records sent twice"
    assert len(counts) == count, f"{count - len(counts)} records missing"


def outage(tmp_path: Path, case: Case, count: int = 1000) -> RestTarget:
    """The target is down while `count` records arrive, then back: each arrives exactly once."""
    target = case.target()
    try:
        target.down()
        raw = {"exporters": {case.exporter_id: case.config(target.url)}, **case.extra_config}
        raw.setdefault("service", {})["pipelines"] = {"usage": {"exporters": [case.exporter_id]}}
        with running_collector(make_config(tmp_path, **raw)) as collector:
            export(collector.http_url, case.spans(count))
            assert len(collector.records()) == count
            labels = {"exporter": case.exporter_id}
            wait_for(lambda: collector.metric("spanmeter_export_failures_total", labels) >= 2, what="failed attempts")
            target.up()
            wait_for(lambda: len(target.counts(case.record_ids)) >= count, what="every record")
        # stopped: nothing more can arrive
        assert_each_once(target, case, count)
        return target
    finally:
        target.stop()


def kill_9_while_delivering(
    tmp_path: Path, case: Case, count: int = 300, accepted_before: int = 3, storage: dict[str, Any] | None = None
) -> RestTarget:
    """`spanmeter serve` is killed (SIGKILL) while it waits for the target's answer to a request,
    after `accepted_before` accepted ones; the target drops that request; a restart delivers the
    rest: each record arrives exactly once. `storage`: the config's (default: SQLite in tmp_path)."""
    target = case.target()
    port = free_port()
    exporters = {case.exporter_id: case.config(target.url)}
    service = {"pipelines": {"usage": {"exporters": [case.exporter_id]}}}
    log = (tmp_path / "serve.log").open("ab")
    proc: subprocess.Popen[bytes] | None = None
    try:
        target.hold_after(accepted_before)
        proc = start_server(tmp_path, port, service=service, exporters=exporters, stderr=log.fileno(), storage=storage)
        export(f"http://127.0.0.1:{port}", case.spans(count))
        assert target.holding.wait(60), "the exporter never reached the held request"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        target.release()
        assert len(target.counts(case.record_ids)) < count  # killed in the middle of delivering
        proc = start_server(tmp_path, port, service=service, exporters=exporters, stderr=log.fileno(), storage=storage)
        wait_for(lambda: len(target.counts(case.record_ids)) >= count, what="every record after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc = None
        assert_each_once(target, case, count)
        return target
    except BaseException:
        log.flush()
        print((tmp_path / "serve.log").read_text(errors="replace")[-4000:])  # shown by pytest on failure
        raise
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        log.close()
        target.stop()

