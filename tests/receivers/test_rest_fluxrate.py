"""Fluxrate-compatible metering: `POST /api/v1/sdk/track` stores `meter` records with exact
quantities, de-duplicated by `idempotency_key`, metadata filterable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config, running_collector
from tests.receivers.conftest import Rest

# The documented call: one unit for a customer, with an idempotency key.
EXAMPLE: dict[str, Any] = {
    "meter_token": "0b8f5a3e-2c4d-4e8f-9a1b-7c6d5e4f3a2b",
    "customer_external_id": "cust_123",
    "quantity": 1,
    "idempotency_key": "order_8841",
    "metadata": {"region": "eu", "plan": "pro"},
}


def test_documented_call_is_stored_once(rest: Rest) -> None:
    first = rest.post("/api/v1/sdk/track", EXAMPLE)
    assert first.status_code == 202 and first.json() == {"ok": True, "duplicate": False}
    again = rest.post("/api/v1/sdk/track", EXAMPLE)
    assert again.status_code == 202 and again.json() == {"ok": True, "duplicate": True}
    [item] = rest.items()
    assert item["kind"] == "meter" and item["type"] == item["meter"] == EXAMPLE["meter_token"]
    assert item["customerId"] == "cust_123" and item["quantity"] == "1" and item["count"] == 1
    assert item["idempotencyKey"] == "order_8841"
    assert item["meta"] == {"region": "eu", "plan": "pro"}
    assert rest.items(**{"meta[region]": "eu"}) == [item]
    assert rest.items(**{"meta[region]": "us"}) == []


def test_decimal_quantities_and_timestamps_are_exact(rest: Rest) -> None:
    calls = [
        {"quantity": 0.1, "timestamp": "2026-11-23T12:00:00Z", "idempotency_key": "a"},
        {"quantity": 2.5, "timestamp": "2026-11-23T13:30:00.123456+01:00", "idempotency_key": "b"},
        {"quantity": 1234567890123, "timestamp": "2026-11-23T12:00:00", "idempotency_key": "c",
         "metadata": {"units": 3, "final": True, "ratio": 0.25}},
    ]  # fmt: skip
    for call in calls:
        assert rest.post("/api/v1/sdk/track", {**EXAMPLE, **call}).status_code == 202
    c, b, a = rest.items()
    assert (a["quantity"], b["quantity"], c["quantity"]) == ("0.1", "2.5", "1234567890123")
    assert a["occurredAt"] == "2026-11-23T12:00:00.000000Z"
    assert b["occurredAt"] == "2026-11-23T12:30:00.123456Z"
    assert c["occurredAt"] == "2026-11-23T12:00:00.000000Z"  # no offset: UTC
    assert c["meta"] == {"units": "3", "final": "true", "ratio": "0.25"}


def test_without_idempotency_key_every_call_counts(rest: Rest) -> None:
    call = {k: v for k, v in EXAMPLE.items() if k != "idempotency_key"}
    assert [rest.post("/api/v1/sdk/track", call).json()["duplicate"] for _ in range(3)] == [False] * 3
    assert len(rest.items()) == 3


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"quantity": 0}, "quantity must be > 0, got 0"),
        ({"quantity": -2.5}, "quantity must be > 0, got -2.5"),
        ({"quantity": "5"}, "quantity: Input should be a number"),
        ({"quantity": True}, "quantity: Input should be a number"),
        ({"quantity": 1e16}, "quantity is 1E+16, above the limit"),
        ({"quantity": None}, "quantity: Input should be a number"),
        ({"meter_token": None}, "meter_token: Input should be a valid string"),
        ({"meter_token": ""}, "meter_token must not be empty"),
        ({"customer_external_id": 123}, "customer_external_id: Input should be a valid string"),
        ({"timestamp": "23/11/2026"}, "timestamp must be an ISO-8601 time"),
        ({"timestamp": "2300-01-01T00:00:00Z"}, "timestamp must be between 1970 and 2262"),
        ({"metadata": {"a": [1]}}, "metadata.a must be a string, got an array"),
        ({"metadata": "region=eu"}, "metadata: Input should be a valid dictionary"),
        ({"metadata": {f"k{i}": "v" for i in range(65)}}, "metadata has 65 entries; the limit is 64 (processors::usage::max_meta_keys)"),
    ],
)
def test_invalid_call_is_400_naming_the_field(shared_rest: Rest, change: dict[str, Any], error: str) -> None:
    answer = shared_rest.post("/api/v1/sdk/track", {**EXAMPLE, **change})
    assert answer.status_code == 400
    assert answer.json()["ok"] is False and error in answer.json()["error"], answer.json()
    assert shared_rest.items() == []


def test_missing_fields_are_named(rest: Rest) -> None:
    answer = rest.post("/api/v1/sdk/track", {"quantity": 1})
    assert answer.status_code == 400
    assert answer.json() == {
        "ok": False,
        "error": "meter_token: Field required; customer_external_id: Field required",
    }


def test_x_api_key_header(auth_rest: Rest) -> None:
    key, _ = auth_rest.key("acme")
    assert auth_rest.post("/api/v1/sdk/track", EXAMPLE).status_code == 401
    answer = auth_rest.post("/api/v1/sdk/track", EXAMPLE, headers={"X-API-Key": key})
    assert answer.status_code == 202
    assert [item["workspace"] for item in auth_rest.items(key)] == ["acme"]


def test_metadata_limit_is_the_configured_one_as_on_otlp(tmp_path: Path) -> None:
    """`max_meta_keys` bounds REST metadata as it bounds `usage.meta.*` attributes on OTLP."""
    config = make_config(tmp_path, processors={"usage": {"max_meta_keys": 2}})
    with running_collector(config) as running:
        rest = Rest(running)
        three = {**EXAMPLE, "metadata": {"a": "1", "b": "2", "c": "3"}}
        refused = rest.post("/api/v1/sdk/track", three)
        assert refused.status_code == 400
        assert refused.json()["error"] == "metadata has 3 entries; the limit is 2 (processors::usage::max_meta_keys)"
        llm = {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 1, "completion_tokens": 1,
               "total_tokens": 2, "metadata": {"feature": "chat", "a": "1", "b": "2", "c": "3"}}
        assert rest.post("/api/ingest", llm).status_code == 400
        assert rest.items() == []
        assert rest.post("/api/v1/sdk/track", {**EXAMPLE, "metadata": {"a": "1", "b": "2"}}).status_code == 202
        assert len(rest.items()) == 1
        rest.close()
