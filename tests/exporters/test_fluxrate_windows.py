"""The `fluxrate` exporter's pre-aggregation (exporters/fluxrate_windows.py) against the fake Fluxrate.

What a user depends on: per customer and meter, what Fluxrate counts equals the exact sum of the
records, late records included (they go on their own, with their own key), whatever the moment
spanmeter is killed: a window's total never changes once sent, and no record is summed twice.
The first tests drive the exporter with a clock of their own (windows of a minute, no waiting);
the last ones run `spanmeter serve` with windows of a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from spanmeter.cli import main
from spanmeter.exporters.base import Delivered, Partial, Paused, RetryLater, SkipsRecords
from spanmeter.exporters.fluxrate import FluxrateConfig, FluxrateExporter
from spanmeter.exporters.fluxrate_windows import (
    CLOSING,
    DEAD,
    SENT,
    Window,
    WindowedFluxrateExporter,
    WindowState,
)
from spanmeter.record import UsageRecord, format_ns
from spanmeter.store.outbox import Claim
from tests.conftest import make_config, running_collector
from tests.exporters.fluxrate_target import (
    TOKENS,
    all_of,
    check_fluxrate,
    fluxrate,
    resent_differently,
    settings,
    totals,
)
from tests.exporters.harness import FAST, export, wait_for
from tests.fakes.rest_target import Answer, RestTarget
from tests.otlp_helpers import T0, make_spans
from tests.test_crash import free_port, start_server

S = 10**9
MINUTE = 60 * S
W0 = T0 - T0 % MINUTE  # a window's start
ACCEPTED: Answer = (202, {}, {"ok": True, "duplicate": False})
NAME = "fluxrate/test"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def target(rest_target: Callable[..., RestTarget]) -> RestTarget:
    return fluxrate(rest_target(check=check_fluxrate, default=ACCEPTED))


def windowed(tmp_path: Path, url: str, clock: Clock, window: float = 60, grace: float = 30) -> WindowedFluxrateExporter:
    """A fresh exporter on the state file in tmp_path, as a restarted process would make it."""
    sender = FluxrateExporter(NAME, FluxrateConfig(**settings(url)))
    state = WindowState(tmp_path / "windows.db", NAME)
    return WindowedFluxrateExporter(sender, state, window=window, grace=grace, clock=clock, background=False)


def meter(key: str, quantity: str, at: int, customer: str = "acme", name: str = "api_calls") -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="meter", type=name, occurred_at=at, customer_id=customer,
                       meter=name, quantity=Decimal(quantity))


def chat(key: str, tokens: int, at: int, customer: str = "acme") -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="llm", type="chat", occurred_at=at, customer_id=customer,
                       input_tokens=tokens, output_tokens=0, total_tokens=tokens)


class Outbox:
    """Hands records out in claims with increasing seqs, like the store's outbox."""

    def __init__(self) -> None:
        self.seq = 0

    def claim(self, *records: UsageRecord) -> Claim:
        seqs = list(range(self.seq + 1, self.seq + 1 + len(records)))
        claim = Claim(NAME, seqs, False, list(records), start=self.seq, end=seqs[-1])
        self.seq = seqs[-1]
        return claim


def expected(records: Sequence[UsageRecord]) -> dict[tuple[str, str], Decimal]:
    found: dict[tuple[str, str], Decimal] = {}
    for r in records:
        at = (str(r.customer_id), TOKENS[r.type])
        found[at] = found.get(at, Decimal(0)) + ((r.quantity or Decimal(0)) if r.kind == "meter" else Decimal(r.total_tokens or 0))
    return found


def test_totals_per_window_equal_the_sum_of_the_records_late_ones_included(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    exporter = windowed(tmp_path, target.url, clock)
    outbox = Outbox()
    sent: list[UsageRecord] = []

    def send(*records: UsageRecord) -> None:
        sent.extend(records)
        assert exporter.send(outbox.claim(*records)) == Delivered()

    send(meter("a", "2.5", W0 + 1 * S), meter("b", "0.25", W0 + 5 * S), meter("c", "3", W0 + 2 * S, "beta"),
         chat("d", 1000, W0 + 3 * S), meter("e", "4", W0 - 50 * S))  # e: the previous window, still in its grace
    assert target.requests == []  # nothing is sent before a window's grace period is over
    clock.now = W0 + 31 * S
    exporter.flush_due()  # the previous window (due at W0 + 30 s)
    [previous] = all_of(target.accepted)
    assert (previous["quantity"], previous["timestamp"]) == (4, format_ns(W0 - MINUTE))
    send(meter("f", "1", W0 - 40 * S), meter("g", "0.125", W0 + 30 * S))  # f: late for the sent window
    [late] = all_of(target.accepted[1:])
    assert (late["idempotency_key"], late["quantity"]) == ("f", 1)
    clock.now = W0 + 90 * S
    exporter.flush_due()
    send(meter("h", "5", W0 + 59 * S))  # late for the window just sent
    exporter.flush_due()
    assert totals(target) == expected(sent)
    bodies = all_of(target.accepted)
    assert len(bodies) == 6 and len({b["idempotency_key"] for b in bodies}) == 6
    windows = {(b["customer_external_id"], b["meter_token"]): b for b in bodies if b["timestamp"] == format_ns(W0)}
    assert windows[("acme", TOKENS["api_calls"])]["quantity"] == Decimal("2.875")
    assert windows[("acme", TOKENS["chat"])]["quantity"] == 1000
    assert {w.state for w in exporter.state.windows()} == {SENT}
    exporter.close()


def test_a_window_key_is_a_hash_of_workspace_customer_meter_and_start() -> None:
    def key(**changes: Any) -> str:
        values: dict[str, Any] = {"workspace": "default", "customer": "acme", "meter_token": TOKENS["chat"],
                                  "start_ns": W0, "due_ns": 0, "quantity": Decimal(1), "records": 1, "state": "open"}
        return Window(**{**values, **changes}).key

    assert key() == key(quantity=Decimal(7), records=3, due_ns=5, state=SENT)
    assert len({key(), key(workspace="w2"), key(customer="beta"), key(meter_token=TOKENS["api_calls"]),
                key(start_ns=W0 + MINUTE)}) == 5


def test_records_handed_out_again_after_a_crash_are_not_summed_twice(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    outbox = Outbox()
    first = outbox.claim(meter("a", "1.5", W0 + S), meter("b", "2", W0 + 2 * S))
    exporter = windowed(tmp_path, target.url, clock)
    assert exporter.send(first) == Delivered()
    exporter.close()  # killed before the outbox committed the claim: the next process gets it again
    restarted = windowed(tmp_path, target.url, clock)
    assert restarted.send(first) == Delivered()
    assert restarted.send(outbox.claim(meter("c", "0.5", W0 + 3 * S))) == Delivered()
    clock.now = W0 + 90 * S
    restarted.flush_due()
    assert totals(target) == {("acme", TOKENS["api_calls"]): Decimal(4)}
    restarted.close()


def test_a_window_being_sent_keeps_its_total_across_a_restart(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    outbox = Outbox()
    exporter = windowed(tmp_path, target.url, clock)
    assert exporter.send(outbox.claim(meter("a", "3", W0 + S))) == Delivered()
    clock.now = W0 + 90 * S
    target.answer_next((503, {"retry-after": "1"}, "unavailable"))
    exporter.flush_due()  # closed, then refused for now
    assert [w.state for w in exporter.state.windows()] == [CLOSING]
    exporter.close()
    restarted = windowed(tmp_path, target.url, clock)
    # a record for the closed window is late: on its own, never added to the total being sent
    assert restarted.send(outbox.claim(meter("b", "2", W0 + 2 * S))) == Delivered()
    restarted.flush_due()
    assert [r.answer for r in target.requests] == [503, 202, 202]
    assert target.requests[0].raw == target.requests[2].raw  # the same total, the same key
    assert totals(target) == {("acme", TOKENS["api_calls"]): Decimal(5)}
    restarted.close()


def test_a_late_record_waits_for_the_target_in_order(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 100 * S)
    outbox = Outbox()
    exporter = windowed(tmp_path, target.url, clock)
    claim = outbox.claim(meter("open", "1", W0 + 90 * S), meter("late", "2", W0), meter("next", "3", W0 + 95 * S))
    target.answer_next((429, {"retry-after": "2"}, {"error": "slow down"}))
    outcome = exporter.send(claim)
    assert outcome == Partial(1, RetryLater(outcome.then.reason, 2.0))  # type: ignore[union-attr]
    rest = Claim(NAME, claim.seqs[1:], False, claim.records[1:], start=claim.seqs[0], end=claim.end)
    assert exporter.send(rest) == Delivered()
    clock.now = W0 + 200 * S
    exporter.flush_due()
    assert totals(target) == {("acme", TOKENS["api_calls"]): Decimal(6)}
    exporter.close()


def test_a_refused_late_record_is_dead_even_after_a_crash(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 100 * S)
    outbox = Outbox()
    claim = outbox.claim(meter("late", "2", W0), meter("open", "1", W0 + 90 * S))
    target.answer_next((400, {}, {"error": "customer_external_id: unknown"}))
    exporter = windowed(tmp_path, target.url, clock)
    first = exporter.send(claim)
    assert isinstance(first, Partial) and first.done == 2 and "customer_external_id" in first.dead[0]
    exporter.close()
    restarted = windowed(tmp_path, target.url, clock)
    assert restarted.send(claim) == first and len(target.requests) == 1  # the outbox had not committed it
    restarted.close()


def test_a_state_file_of_another_database_pauses_the_exporter(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    old = Outbox()
    exporter = windowed(tmp_path, target.url, clock)
    exporter.send(old.claim(*[meter(f"k{i}", "1", W0 + S) for i in range(5)]))
    exporter.close()
    fresh_database = Outbox()  # its positions start again at 1: summing would pass records over
    restarted = windowed(tmp_path, target.url, clock)
    outcome = restarted.send(fresh_database.claim(meter("new", "2", W0 + 2 * S)))
    assert isinstance(outcome, Paused) and "belongs to another database" in outcome.reason
    assert [w.quantity for w in restarted.state.windows()] == [5]
    restarted.close()


def test_a_record_without_customer_is_a_dead_delivery_never_summed(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    exporter = windowed(tmp_path, target.url, clock)
    outcome = exporter.send(Outbox().claim(meter("a", "1", W0 + S), meter("nobody", "2", W0 + S, customer=""),
                                           meter("b", "3", W0 + S)))
    assert isinstance(outcome, Partial) and outcome.done == 3 and "no customer id" in outcome.dead[1]
    assert [(w.customer, w.quantity) for w in exporter.state.windows()] == [("acme", 4)]
    assert target.requests == []
    exporter.close()


def test_dead_deliveries_sent_again_go_on_their_own(tmp_path: Path, target: RestTarget) -> None:
    exporter = windowed(tmp_path, target.url, Clock(W0 + 10 * S))
    requeued = Claim(NAME, [7], True, [meter("r", "2", W0 + S)])
    assert exporter.send(requeued) == Delivered()
    assert [b["idempotency_key"] for b in all_of(target.accepted)] == ["r"]
    assert exporter.state.windows() == []
    exporter.close()


def test_a_window_refused_for_good_is_kept_and_logged(tmp_path: Path, target: RestTarget,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(W0 + 10 * S)
    exporter = windowed(tmp_path, target.url, clock)
    exporter.send(Outbox().claim(meter("a", "3", W0 + S)))
    clock.now = W0 + 90 * S
    target.answer_next((422, {}, {"error": "meter archived"}))
    with caplog.at_level(logging.ERROR):
        exporter.flush_due()
    [window] = exporter.state.windows()
    assert window.state == DEAD and window.quantity == 3
    assert window.key in caplog.text and "manual reconciliation" in caplog.text
    exporter.close()


def test_records_skipped_while_summing_are_counted(tmp_path: Path, target: RestTarget) -> None:
    exporter = windowed(tmp_path, target.url, Clock(W0 + 10 * S))
    assert isinstance(exporter, SkipsRecords)  # so the runner counts its skips on /metrics
    skipped: list[str] = []
    exporter.count_skips(lambda reason, _: skipped.append(reason))
    claim = Outbox().claim(chat("c", 0, W0 + S), meter("m", "1", W0 + S, name="storage_gb"), meter("n", "1", W0 + S))
    assert exporter.send(claim) == Delivered()
    assert skipped == ["no_quantity", "no_meter_token"]
    assert [w.quantity for w in exporter.state.windows()] == [1]
    exporter.close()


def test_dead_windows_are_counted_in_exporters_status(tmp_path: Path, target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    exporter = windowed(tmp_path, target.url, clock)
    outbox = Outbox()
    exporter.send(outbox.claim(meter("a", "3", W0 + S)))
    clock.now = W0 + 90 * S
    target.answer_next((422, {}, {"error": "meter archived"}))
    exporter.send(outbox.claim(meter("b", "4", W0 + MINUTE + S, customer="beta")))
    exporter.flush_due()
    clock.now = W0 + 150 * S
    target.answer_next((400, {}, {"error": "customer deleted"}))
    exporter.flush_due()
    assert [w.state for w in exporter.state.windows()] == [DEAD, DEAD]
    exporter.close()
    # The exporter runs (it is then known to the store), then the operator asks.
    fluxrate_config = {**settings(target.url), **FAST, "aggregation": {"enabled": True, "state_path": str(tmp_path / "windows.db")}}
    raw = {"exporters": {NAME: fluxrate_config}, "service": {"pipelines": {"usage": {"exporters": [NAME]}}}}
    with running_collector(make_config(tmp_path, **raw)) as collector:
        wait_for(lambda: bool(collector.collector.store.exporter_states()), what="the exporter's first claim")
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}, **raw}))
    status = CliRunner().invoke(main, ["exporters", "status", "--json", "-c", str(config)])
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.output)
    assert row["exporter"] == NAME and row["dead_windows"] == 2
    assert "customer deleted" in row["dead_window_error"]  # the latest one's
    table = CliRunner().invoke(main, ["exporters", "status", "-c", str(config)]).output
    assert "customer dele" in table  # (cut to the width of the terminal)


def test_a_new_window_length_starts_after_the_windows_sent_with_the_old_one(tmp_path: Path,
                                                                            target: RestTarget) -> None:
    clock = Clock(W0 + 10 * S)
    outbox = Outbox()
    exporter = windowed(tmp_path, target.url, clock)
    exporter.send(outbox.claim(meter("a", "1", W0 + S)))
    clock.now = W0 + 100 * S
    exporter.flush_due()
    exporter.close()
    hourly = windowed(tmp_path, target.url, clock, window=3600)  # its window would start at W0 (or before)
    hour = W0 - W0 % (3600 * S)
    hourly.send(outbox.claim(meter("b", "2", W0 + 99 * S)))
    clock.now = hour + 3600 * S + 31 * S
    hourly.flush_due()
    assert totals(target) == {("acme", TOKENS["api_calls"]): Decimal(3)}
    assert [b["idempotency_key"] for b in all_of(target.accepted)][1] == "b"  # on its own
    hourly.close()


# --- spanmeter serve, windows of a fraction of a second -------------------------------------------

AGGREGATION = {"enabled": True, "window": 1.0, "grace": 1.0}


def meter_spans(quantities: Sequence[str], customers: Sequence[str], at: int | None = None) -> Sequence[ReadableSpan]:
    """One meter span per quantity (api_calls), occurring now unless `at` says when."""

    def build(tracer: Tracer) -> None:
        for i, quantity in enumerate(quantities):
            start = time.time_ns() if at is None else at + i
            with tracer.start_as_current_span(f"call {i}", start_time=start) as span:
                span.set_attributes({"usage.meter": "api_calls", "usage.quantity": quantity,
                                     "usage.customer.id": customers[i % len(customers)]})

    return make_spans(build)


def sums(quantities: Sequence[str], customers: Sequence[str]) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for i, quantity in enumerate(quantities):
        found[(customers[i % len(customers)], TOKENS["api_calls"])] += Decimal(quantity)  # type: ignore[assignment]
    return found


def test_pre_aggregation_end_to_end(tmp_path: Path, target: RestTarget) -> None:
    quantities = [f"{i}.{i % 7}" for i in range(1, 61)]
    customers = ["acme", "beta", "gamma"]
    exporter = {**settings(target.url), **FAST, "aggregation": {**AGGREGATION, "state_path": str(tmp_path / "w.db")}}
    config = make_config(tmp_path, exporters={NAME: exporter}, service={"pipelines": {"usage": {"exporters": [NAME]}}})
    want = sums(quantities, customers) + sums(["9.5"] * 3, customers)
    with running_collector(config) as collector:
        export(collector.http_url, meter_spans(quantities, customers))
        export(collector.http_url, meter_spans(["9.5"] * 3, customers, at=T0))  # long past: each on its own
        wait_for(lambda: totals(target) == want, what="every window's total")
    assert len(target.accepted) < 63  # summed: far fewer events than records
    assert resent_differently(target) == []


def test_windows_wait_out_an_outage(tmp_path: Path, target: RestTarget, caplog: pytest.LogCaptureFixture) -> None:
    quantities = [f"0.{i:03d}" for i in range(1, 301)]
    customers = ["acme", "beta", "gamma", "delta"]
    exporter = {**settings(target.url), **FAST, "aggregation": {**AGGREGATION, "state_path": str(tmp_path / "w.db")}}
    config = make_config(tmp_path, exporters={NAME: exporter}, service={"pipelines": {"usage": {"exporters": [NAME]}}})
    target.down()
    with caplog.at_level(logging.WARNING), running_collector(config) as collector:
        # 3 s ahead: the records are in an open window even when a loaded machine is slow to store
        # them (records arriving after their window's grace would go alone, not as totals).
        export(collector.http_url, meter_spans(quantities, customers, at=time.time_ns() + 3_000_000_000))
        wait_for(lambda: "window totals not delivered (attempt 2)" in caplog.text, what="failed attempts")
        target.up()
        wait_for(lambda: totals(target) == sums(quantities, customers), what="every total")
    assert resent_differently(target) == [] and len(target.accepted) < len(quantities)


def test_kill_9_while_sending_a_window(tmp_path: Path, target: RestTarget) -> None:
    customers = ["acme", "beta"]
    first, second = [f"0.{i:02d}" for i in range(1, 41)], [str(i) for i in range(1, 21)]
    exporter = {**settings(target.url), **FAST, "aggregation": {**AGGREGATION, "state_path": str(tmp_path / "w.db")}}
    service = {"pipelines": {"usage": {"exporters": [NAME]}}}
    port = free_port()
    log = (tmp_path / "serve.log").open("ab")
    proc: subprocess.Popen[bytes] | None = None
    try:
        target.hold_after(0)  # the first event (a window's total) waits unanswered
        proc = start_server(tmp_path, port, service=service, exporters={NAME: exporter}, stderr=log.fileno())
        export(f"http://127.0.0.1:{port}", meter_spans(first, customers))
        assert target.holding.wait(30), "no window was sent"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        target.release()
        assert target.accepted == []
        proc = start_server(tmp_path, port, service=service, exporters={NAME: exporter}, stderr=log.fileno())
        export(f"http://127.0.0.1:{port}", meter_spans(second, customers))
        want = sums(first, customers) + sums(second, customers)
        wait_for(lambda: totals(target) == want, what="every total after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc = None
        assert resent_differently(target) == []
        assert totals(target) == want
        assert len(target.accepted) < len(first) + len(second)  # summed
    except BaseException:
        log.flush()
        print((tmp_path / "serve.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        log.close()
