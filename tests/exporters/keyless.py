"""What the tests of the keyless exporter types (one record per request: llmtrack, spryngtime) share:
a JSON shape checker for the fake targets' contract checks, records as the store hands them out,
and the tests each type runs alike (status table rows through the real exporter to a real fake
target, an unreachable target, missing keys, outage, kill -9):

    class TestLLMtrack(KeylessTypeTests):
        CASE = CASE                                  # the type's harness.Case
        MESSAGES = {400: "Invalid payload", ...}     # the target's documented error messages
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Final

import pytest

from spanmeter.config import parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters import registry
from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Paused, RetryLater
from spanmeter.exporters.per_record import Answer, PerRecordExporter
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.outbox import Claim
from tests.conftest import make_config, running_collector
from tests.exporters.harness import (
    Case,
    export,
    kill_9_while_delivering,
    numbered_llm_spans,
    outage,
    wait_for,
)
from tests.fakes.rest_target import Request, RestTarget
from tests.otlp_helpers import T0

Check = Callable[[Any], bool]
Shape = Mapping[str, tuple[Check, str]]  # field -> (check of its value, what it should be)

STRING: Final = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
COUNT: Final = (lambda v: type(v) is int and v >= 0, "an integer >= 0")
COUNT_OR_NULL: Final = (lambda v: v is None or type(v) is int and v >= 0, "an integer >= 0 or null")
NUMBER: Final = (lambda v: type(v) in (int, float) and v >= 0, "a number >= 0")
STRINGS: Final = (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "an array of strings")


def json_object(shape: Shape, required: AbstractSet[str] = frozenset()) -> tuple[Check, str]:
    """A nested object's check, for a Shape."""
    return (lambda v: shape_problem(v, shape, required) is None, f"an object of {sorted(shape)}, {sorted(required)} required")


def shape_problem(value: Any, shape: Shape, required: AbstractSet[str], where: str = "body") -> str | None:
    """What is wrong with a JSON object against its documented fields, or None."""
    if not isinstance(value, dict):
        return f"{where}: expected one JSON object (one record per request), got {type(value).__name__}"
    if extra := set(value) - set(shape):
        return f"{where}: fields the contract does not have: {sorted(extra)}"
    if missing := required - set(value):
        return f"{where}: required fields missing: {sorted(missing)}"
    for name, item in value.items():
        check, expected = shape[name]
        if not check(item):
            return f"{where}.{name}: expected {expected}, got {item!r}"
    return None


def contract_problem(
    request: Request, path: str, auth: tuple[str, str], shape: Shape, required: AbstractSet[str]
) -> str | None:
    """What is wrong with a request to a one-record-per-request JSON target, or None: POST to
    `path`, the auth header (name, value) and no other key header, JSON, one object of `shape`."""
    if (request.method, request.path) != ("POST", path):
        return f"expected POST {path}"
    if request.headers.get(auth[0]) != auth[1]:
        return f"expected the header {auth[0]}: {auth[1]}"
    if ({"authorization", "x-api-key"} - {auth[0]}) & set(request.headers):
        return "the key in more than one header"
    if request.headers.get("content-type") != "application/json":
        return "expected content-type application/json"
    return shape_problem(request.body, shape, required)


def llm_record(**values: Any) -> UsageRecord:
    """An LLM call record as the store hands it to an exporter."""
    return UsageRecord(**{
        "idempotency_key": "k1", "kind": "llm", "type": "chat", "occurred_at": T0, "id": new_record_id(),
        "customer_id": "acme", "provider": "openai", "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 1200, "output_tokens": 300,
        "total_tokens": 1500, "latency_ms": 840, "cost_usd": Decimal("0.00036"), "cost_source": "computed",
        **values,
    })


@contextmanager
def exporter_for(case: Case, url: str, **settings: Any) -> Iterator[PerRecordExporter]:
    """The exporter the case's config for `url`, with `settings` over it, runs; closed after."""
    exporter_type = registry.type_of(case.exporter_id)
    assert exporter_type is not None
    config = exporter_type.config.model_validate({**case.settings(url), **settings})
    exporter = registry.create(case.exporter_id, config)
    assert isinstance(exporter, PerRecordExporter)
    try:
        yield exporter
    finally:
        exporter.close()


def send_one(exporter: PerRecordExporter, record: UsageRecord) -> Answer:
    """One record sent the way the runner sends it."""
    return exporter.send_record(Claim(exporter.name, [1], False, records=[record]), 0)


@dataclass(frozen=True)
class StatusRow:
    status: int
    outcome: type
    hint: str | None = None  # what spanmeter's reason adds for the operator
    retry_after: str | None = None  # the target's Retry-After header

    def __str__(self) -> str:
        return f"{self.status}-{self.outcome.__name__}"


STATUS_ROWS: Final = [
    StatusRow(400, Dead),
    StatusRow(422, Dead),
    StatusRow(401, Paused, "check the exporter's api_key"),
    StatusRow(403, Paused, "check the exporter's api_key"),
    StatusRow(404, Paused, "check the exporter's endpoint"),
    StatusRow(402, LongBackoff, "plan limit is reached; the records wait"),
    StatusRow(429, RetryLater, retry_after="7"),
    StatusRow(500, RetryLater),
    StatusRow(503, RetryLater, retry_after="120"),
]


def assert_status_row(rest_target: Callable[..., RestTarget], case: Case, row: StatusRow, message: str) -> None:
    """The target answers the row's status, with `{"ok": false, "error": message}`, to one record:
    the exporter's outcome is the row's, and its reason has the message and the hint."""
    target = rest_target(check=case.check, default=case.default)
    headers = {"retry-after": row.retry_after} if row.retry_after else {}
    target.answer_next((row.status, headers, {"ok": False, "error": message}))
    with exporter_for(case, target.url) as exporter:
        outcome = send_one(exporter, llm_record())
    assert type(outcome) is row.outcome and not isinstance(outcome, Delivered)
    assert f"HTTP {row.status}" in outcome.reason and message in outcome.reason
    assert row.hint is None or row.hint in outcome.reason
    if isinstance(outcome, (RetryLater, LongBackoff)):
        assert outcome.retry_after == (float(row.retry_after) if row.retry_after else None)
    assert len(target.requests) == 1


def assert_config_problem(exporter_id: str, settings: dict[str, Any], problem: str) -> None:
    """A config with these exporter settings is refused, with `problem` among the reasons."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"exporters": {exporter_id: settings}}, {})
    assert problem in str(caught.value)


class KeylessTypeTests:
    """The tests each keyless type runs alike. A type's test file subclasses this as `Test...`
    with its harness Case and the target's documented error messages."""

    CASE: ClassVar[Case]
    MESSAGES: ClassVar[Mapping[int, str]] = {}  # status -> the target's documented error message

    @pytest.mark.parametrize("row", STATUS_ROWS, ids=str)
    def test_each_answer_of_the_status_table_has_its_outcome(
        self, rest_target: Callable[..., RestTarget], row: StatusRow
    ) -> None:
        assert_status_row(rest_target, self.CASE, row, self.MESSAGES.get(row.status, f"refused ({row.status})"))

    def test_an_unreachable_target_is_retried(self) -> None:
        target = RestTarget().start()
        url = target.url
        target.stop()  # nothing listens on its port any more
        with exporter_for(self.CASE, url) as exporter:
            outcome = send_one(exporter, llm_record())
        assert isinstance(outcome, RetryLater) and "cannot reach" in outcome.reason

    @pytest.mark.parametrize("missing", ["endpoint", "api_key"])
    def test_a_missing_endpoint_or_key_is_named(self, missing: str) -> None:
        settings = {k: v for k, v in self.CASE.settings("http://127.0.0.1:9").items() if k != missing}
        assert_config_problem(self.CASE.exporter_id, settings, f"{self.CASE.exporter_id}::{missing}: required key")

    def test_spanmeters_own_compatible_ingest_takes_each_record(self, tmp_path: Path) -> None:
        """Another spanmeter's ingest for this target (which answers as the target documents)
        stores every record sent, with its tokens: the bodies are what the target accepts."""
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with running_collector(make_config(tmp_path / "b")) as downstream:
            exporter = {self.CASE.exporter_id: self.CASE.config(downstream.http_url)}
            pipelines = {"usage": {"exporters": [self.CASE.exporter_id]}}
            config = make_config(tmp_path / "a", exporters=exporter, service={"pipelines": pipelines})
            with running_collector(config) as upstream:
                export(upstream.http_url, numbered_llm_spans(5))
                wait_for(lambda: len(downstream.records()) == 5, what="the records downstream")
                sent = sorted((r.input_tokens, r.output_tokens, r.total_tokens) for r in upstream.records())
                assert upstream.metric("spanmeter_exporter_dead_deliveries", {"exporter": self.CASE.exporter_id}) == 0
            assert sorted((r.input_tokens, r.output_tokens, r.total_tokens) for r in downstream.records()) == sent

    def test_down_while_1000_records_arrive_then_back_gets_each_once(self, tmp_path: Path) -> None:
        target = outage(tmp_path, self.CASE)
        assert len(target.accepted) == 1000  # one request per record

    def test_kill_9_while_delivering_then_a_restart_sends_each_once(self, tmp_path: Path) -> None:
        kill_9_while_delivering(tmp_path, self.CASE, count=100)
