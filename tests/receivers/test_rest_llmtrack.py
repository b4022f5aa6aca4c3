"""LLMtrack-compatible ingest: `POST /api/ingest` answered with the service's statuses and exact
messages (201, 400, 401 ×4, 402), stored as `llm` records priced like OTLP spans."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import pytest

from spanmeter.money import to_nano
from tests.conftest import make_config, running_collector
from tests.receivers.conftest import Rest

# The service's documented example: an openai gpt-4o-mini call with 120/80/200 tokens.
EXAMPLE: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "prompt_tokens": 120,
    "completion_tokens": 80,
    "total_tokens": 200,
    "latency_ms": 850,
    "metadata": {"feature": "support-chat"},
}
CREATED = {"ok": True, "consumption_source": "included"}


def price(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    now = datetime.now(UTC)
    return genai_prices.calc_price(usage, model, provider_id="openai", genai_request_timestamp=now).total_price


def test_documented_example_is_stored_and_priced(rest: Rest) -> None:
    answer = rest.post("/api/ingest", {**EXAMPLE, "cost": 0.00007})
    assert answer.status_code == 201 and answer.json() == CREATED
    [item] = rest.items()
    assert item["kind"] == "llm" and item["type"] == item["operation"] == "chat"
    assert (item["provider"], item["requestModel"]) == ("openai", "gpt-4o-mini")
    assert (item["inputTokens"], item["outputTokens"], item["totalTokens"], item["count"]) == (120, 80, 200, 200)
    assert item["latencyMs"] == 850 and item["status"] == "success" and item["feature"] == "support-chat"
    assert item["costSource"] == "computed"
    assert Decimal(item["costUsd"]) == price("gpt-4o-mini", 120, 80) == Decimal("0.000066")
    assert item["reportedCostUsd"] == "0.00007"  # the client's cost, kept beside ours, exactly


def test_defaults_and_metadata(rest: Rest) -> None:
    body = {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 5,
            "metadata": {"customer_id": "acme", "user_id": "u1", "conversation_id": "c1", "plan": "pro", "tier": 2}}  # fmt: skip
    assert rest.post("/api/ingest", body).status_code == 201
    assert rest.post("/api/ingest", {"provider": "openai", "model": "gpt-4o-mini"}).status_code == 201
    failed = {**EXAMPLE, "status": "timeout", "prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
    assert rest.post("/api/ingest", failed).status_code == 201
    timeout, bare, full = rest.items()  # newest first
    assert full["status"] == "success" and full["feature"] == "unknown"
    assert full["totalTokens"] == 15  # absent total: input + output
    assert (full["customerId"], full["userId"], full["conversationId"]) == ("acme", "u1", "c1")
    assert full["meta"] == {"plan": "pro", "tier": "2"}
    assert rest.items(**{"meta[plan]": "pro"}) == [full]
    assert bare["costSource"] == "none" and "inputTokens" not in bare  # null counts stay null
    assert (timeout["status"], timeout["errorType"], timeout["costSource"]) == ("error", "timeout", "none")


def test_idempotency_key_header_makes_a_retry_safe(rest: Rest) -> None:
    for _ in range(2):
        assert rest.post("/api/ingest", EXAMPLE, headers={"Idempotency-Key": "call-1"}).json() == CREATED
    assert [item["idempotencyKey"] for item in rest.items()] == ["call-1"]
    for _ in range(2):  # no header: every POST is a new record
        assert rest.post("/api/ingest", EXAMPLE).status_code == 201
    assert len(rest.items()) == 3


@pytest.mark.parametrize(
    ("change", "details"),
    [
        ({"prompt_tokens": -1}, "prompt_tokens: Input should be greater than or equal to 0"),
        ({"latency_ms": -5}, "latency_ms: Input should be greater than or equal to 0"),
        ({"completion_tokens": "80"}, "completion_tokens: Input should be a valid integer"),
        ({"total_tokens": 1.5}, "total_tokens: Input should be a valid integer"),
        ({"prompt_tokens": 10**13}, "prompt_tokens is 10000000000000, above the limit"),
        ({"model": None}, "model: Input should be a valid string"),
        ({"provider": ""}, "provider must not be empty"),
        ({"cost": -0.01}, "cost must be >= 0"),
        ({"cost": "free"}, "cost: Input should be a number"),
        ({"metadata": {"feature": ["a"]}}, "metadata.feature: Input should be a valid string"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested must be a string, got a key-value list"),
    ],
)
def test_invalid_payload_is_400(shared_rest: Rest, change: dict[str, Any], details: str) -> None:
    answer = shared_rest.post("/api/ingest", {**EXAMPLE, **change})
    assert answer.status_code == 400
    body = answer.json()
    assert (body["ok"], body["error"]) == (False, "Invalid payload")
    assert details in body["details"]
    assert shared_rest.items() == []


def test_malformed_json_is_invalid_payload(rest: Rest) -> None:
    answer = rest.post("/api/ingest", content=b'{"provider": "openai",')
    assert answer.status_code == 400
    assert answer.json()["error"] == "Invalid payload" and "not valid JSON" in answer.json()["details"]


def test_the_four_401_messages_and_both_key_headers(auth_rest: Rest) -> None:
    def error(**kwargs: Any) -> tuple[int, Any]:
        answer = auth_rest.post("/api/ingest", EXAMPLE, **kwargs)
        return answer.status_code, answer.json()

    assert error() == (401, {"ok": False, "error": "Missing API key"})
    assert error(key="sm_not-a-key") == (401, {"ok": False, "error": "Invalid API key"})
    revoked, revoked_id = auth_rest.key()
    auth_rest.store.set_key_state(revoked_id, "revoked")
    assert error(key=revoked) == (401, {"ok": False, "error": "Revoked API key"})
    inactive, inactive_id = auth_rest.key()
    auth_rest.store.set_key_state(inactive_id, "inactive")
    assert error(key=inactive) == (401, {"ok": False, "error": "Inactive API key"})

    key, _ = auth_rest.key("acme")
    assert error(key=key) == (201, CREATED)
    assert error(headers={"x-api-key": key}) == (201, CREATED)
    assert [item["workspace"] for item in auth_rest.items(key)] == ["acme", "acme"]


def test_402_when_the_record_quota_is_spent_also_after_a_restart(tmp_path: Path, storage: dict[str, Any]) -> None:
    config = make_config(tmp_path, storage=storage, auth={"enabled": True})
    month = datetime.now(UTC).strftime("%Y-%m")
    spent = {"ok": False, "error": f"Monthly quota exceeded: 2 of 2 records used in {month} (UTC)"}
    with running_collector(config) as running:
        rest = Rest(running)
        key, _ = rest.key("acme", quota_records=2)
        other, _ = rest.key("globex")  # another workspace, no quota
        assert [rest.post("/api/ingest", EXAMPLE, key=key).status_code for _ in range(2)] == [201, 201]
        refused = rest.post("/api/ingest", EXAMPLE, key=key)
        assert (refused.status_code, refused.json()) == (402, spent)
        assert rest.post("/api/ingest", EXAMPLE, key=other).status_code == 201
        assert len(rest.items(key)) == 2
        rest.close()
    with running_collector(config) as running:  # counted from the store, not from memory
        answer = httpx.post(f"{running.http_url}/api/ingest", json=EXAMPLE, headers={"x-api-key": key})
        assert (answer.status_code, answer.json()) == (402, spent)


def test_402_when_the_cost_quota_is_spent(tmp_path: Path, storage: dict[str, Any]) -> None:
    with running_collector(make_config(tmp_path, storage=storage, auth={"enabled": True})) as running:
        cost_quota_is_spent(Rest(running))


def cost_quota_is_spent(auth_rest: Rest) -> None:
    one_call = price("gpt-4o-mini", 120, 80)  # 0.000066
    key, key_id = auth_rest.key(quota_cost_nano=to_nano(one_call * 2))
    assert [auth_rest.post("/api/ingest", EXAMPLE, key=key).status_code for _ in range(2)] == [201, 201]
    refused = auth_rest.post("/api/ingest", EXAMPLE, key=key)
    assert refused.status_code == 402
    assert refused.json()["error"].startswith("Monthly quota exceeded: $0.000132 of $0.000132 used in ")
    auth_rest.store.set_key_quota(key_id, None, None)  # `spanmeter keys update --no-quota`
    assert auth_rest.post("/api/ingest", EXAMPLE, key=key).status_code == 201
