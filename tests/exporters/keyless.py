"""What the tests of the keyless exporter types (one record per request: llmtrack, spryngtime) share:
a JSON shape checker for the fake targets' contract checks, records as the store hands them out,
and the status table's rows, each sent through the real exporter to a real fake target.

    @pytest.mark.parametrize("row", status_rows({400: "Invalid payload"}), ids=str)
    def test_each_documented_answer(rest_target, row):
        assert_status_row(rest_target, CASE, row)       # CASE: the type's harness.Case
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import pytest

from spanmeter.config import parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters import registry
from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Paused, RetryLater
from spanmeter.exporters.per_record import Answer, PerRecordExporter
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.outbox import Claim
from tests.exporters.harness import Case
from tests.fakes.rest_target import RestTarget
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


def request_problem(request: Any, path: str, auth: tuple[str, str]) -> str | None:
    """What is wrong with the request line and headers, or None."""
    if (request.method, request.path) != ("POST", path):
        return f"expected POST {path}"
    if request.headers.get(auth[0]) != auth[1]:
        return f"expected the header {auth[0]}: {auth[1]}"
    if request.headers.get("content-type") != "application/json":
        return "expected content-type application/json"
    return None


def llm_record(**values: Any) -> UsageRecord:
    """An LLM call record as the store hands it to an exporter."""
    return UsageRecord(**{
        "idempotency_key": "k1", "kind": "llm", "type": "chat", "occurred_at": T0, "id": new_record_id(),
        "customer_id": "acme", "provider": "openai", "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 1200, "output_tokens": 300,
        "total_tokens": 1500, "latency_ms": 840, "cost_usd": Decimal("0.00036"), "cost_source": "computed",
        **values,
    })


def exporter_of(exporter_id: str, settings: dict[str, Any]) -> PerRecordExporter:
    """The exporter a config with these settings runs."""
    exporter_type = registry.type_of(exporter_id)
    assert exporter_type is not None
    exporter = registry.create(exporter_id, exporter_type.config.model_validate(settings))
    assert isinstance(exporter, PerRecordExporter)
    return exporter


def send_one(exporter: PerRecordExporter, record: UsageRecord) -> Answer:
    """One record sent the way the runner sends it."""
    return exporter.send_record(Claim(exporter.name, [1], False, records=[record]), 0)


@dataclass(frozen=True)
class StatusRow:
    status: int
    outcome: type
    says: str  # in the outcome's reason: the target's message or spanmeter's hint
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.status}-{self.outcome.__name__}"


def status_rows(messages: Mapping[int, str]) -> list[StatusRow]:
    """One row per path of the keyless types' status table; `messages`: the target's documented
    error message per status, answered as `{"ok": false, "error": message}`."""
    return [
        StatusRow(400, Dead, messages.get(400, "HTTP 400")),
        StatusRow(422, Dead, "HTTP 422"),
        StatusRow(401, Paused, "check the exporter's api_key"),
        StatusRow(403, Paused, "check the exporter's api_key"),
        StatusRow(404, Paused, "check the exporter's endpoint"),
        StatusRow(402, LongBackoff, messages.get(402, "plan limit")),
        StatusRow(429, RetryLater, "HTTP 429", (("retry-after", "7"),), 7.0),
        StatusRow(500, RetryLater, messages.get(500, "HTTP 500")),
        StatusRow(503, RetryLater, "HTTP 503", (("retry-after", "120"),), 120.0),
    ]


def assert_status_row(rest_target: Callable[..., RestTarget], case: Case, row: StatusRow) -> None:
    """The target answers the row's status to one record: the exporter's outcome is the row's."""
    target = rest_target(check=case.check, default=case.default)
    target.answer_next((row.status, dict(row.headers), {"ok": False, "error": row.says}))
    exporter = exporter_of(case.exporter_id, case.settings(target.url))
    try:
        outcome = send_one(exporter, llm_record())
    finally:
        exporter.close()
    assert type(outcome) is row.outcome and not isinstance(outcome, Delivered)
    assert row.says in outcome.reason and f"HTTP {row.status}" in outcome.reason
    if isinstance(outcome, (RetryLater, LongBackoff)):
        assert outcome.retry_after == row.retry_after
    assert len(target.requests) == 1


def assert_config_problem(exporter_id: str, settings: dict[str, Any], problem: str) -> None:
    """A config with these exporter settings is refused, with `problem` among the reasons."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"exporters": {exporter_id: settings}}, {})
    assert problem in str(caught.value)


def assert_unreachable_is_retried(case: Case) -> None:
    target = RestTarget().start()
    url = target.url
    target.stop()  # nothing listens on its port any more
    exporter = exporter_of(case.exporter_id, case.settings(url))
    try:
        outcome = send_one(exporter, llm_record())
    finally:
        exporter.close()
    assert isinstance(outcome, RetryLater) and "cannot reach" in outcome.reason
