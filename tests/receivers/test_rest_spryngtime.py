"""Spryngtime-compatible trackUsage: one request is one message, stored under the customer `key`,
tokens and model read from a raw OpenAI response with genai-prices' extractor."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from tests.conftest import make_config, running_collector
from tests.receivers.conftest import Rest

CREATED_AT = 1_763_900_000  # 2025-11-23T12:13:20Z
CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": CREATED_AT,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
EXAMPLE: dict[str, Any] = {
    "key": "companyA",
    "query": "How do I reset my password?",
    "tags": ["support", "gpt-4o-mini"],
    "conversationId": "conv-77",
    "openAiResponse": CHAT_COMPLETION,
}


def price(model: str, at: int, **usage: int) -> Decimal:
    when = datetime.fromtimestamp(at, UTC)
    return genai_prices.calc_price(
        genai_prices.Usage(**usage), model, provider_id="openai", genai_request_timestamp=when
    ).total_price


def test_documented_call_with_an_openai_response(rest: Rest) -> None:
    answer = rest.post("/api/usage-tracking/track-usage", EXAMPLE)
    assert answer.status_code == 200
    body = answer.json()
    assert body == {"ok": True, "id": body["id"], "duplicate": False}
    [item] = rest.items()
    assert item["id"] == body["id"]
    assert (item["kind"], item["type"], item["provider"]) == ("llm", "chat", "openai")
    assert item["customerId"] == "companyA" and item["conversationId"] == "conv-77"
    assert item["responseModel"] == "gpt-4o-mini-2024-07-18"
    assert item["messageId"] == CHAT_COMPLETION["id"]
    assert (item["inputTokens"], item["outputTokens"], item["totalTokens"]) == (1200, 300, 1500)
    assert item["cacheReadTokens"] == 1024 and "reasoningTokens" not in item
    assert item["occurredAt"] == "2025-11-23T12:13:20.000000Z"  # the response's `created`
    assert item["costSource"] == "computed"
    expected = price("gpt-4o-mini", CREATED_AT, input_tokens=1200, output_tokens=300, cache_read_tokens=1024)
    assert Decimal(item["costUsd"]) == expected
    assert item["tags"] == ["support", "gpt-4o-mini"]
    assert "query" not in item and rest.running.records()[0].query is None  # content capture is off
    assert rest.items(tag="support") == [item] and rest.items(tag="sales") == []


def test_one_request_is_one_message(rest: Rest) -> None:
    today = {**EXAMPLE, "openAiResponse": {**CHAT_COMPLETION, "created": int(time.time())}}
    for _ in range(3):
        assert rest.post("/api/usage-tracking/track-usage", today).status_code == 200
    assert len(rest.items(customer="companyA")) == 3
    series = rest.http.get("/api/v1/usage/series").json()
    assert sum(point["total"] for point in series["messages"]) == 3


def test_idempotency_key_header_makes_a_retry_safe(rest: Rest) -> None:
    answers = [
        rest.post("/api/usage-tracking/track-usage", EXAMPLE, headers={"Idempotency-Key": "msg-1"}).json()
        for _ in range(2)
    ]
    assert answers[1] == {"ok": True, "id": answers[0]["id"], "duplicate": True}
    assert len(rest.items()) == 1


def test_responses_and_embeddings_shapes(rest: Rest) -> None:
    responses_api = {
        "id": "resp_67ccd2bed1ec8190b14f964abc054267",
        "object": "response",
        "created_at": CREATED_AT,
        "model": "gpt-4.1-mini-2025-04-14",
        "usage": {"input_tokens": 2100, "output_tokens": 310, "total_tokens": 2410,
                  "input_tokens_details": {"cached_tokens": 1536}, "output_tokens_details": {"reasoning_tokens": 64}},
    }  # fmt: skip
    embeddings = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
    }
    for response in (responses_api, embeddings):
        answer = rest.post("/api/usage-tracking/track-usage", {"key": "companyB", "openAiResponse": response})
        assert answer.status_code == 200, answer.text
    embedded, responded = rest.items()
    assert (responded["type"], responded["responseModel"]) == ("chat", "gpt-4.1-mini-2025-04-14")
    assert (responded["inputTokens"], responded["outputTokens"], responded["totalTokens"]) == (2100, 310, 2410)
    assert (responded["cacheReadTokens"], responded["reasoningTokens"]) == (1536, 64)
    assert Decimal(responded["costUsd"]) == price(
        "gpt-4.1-mini", CREATED_AT, input_tokens=2100, output_tokens=310, cache_read_tokens=1536
    )
    assert (embedded["type"], embedded["operation"], embedded["responseModel"]) == (
        "embeddings", "embeddings", "text-embedding-3-small"
    )
    assert (embedded["inputTokens"], embedded["totalTokens"]) == (12, 12) and "outputTokens" not in embedded
    assert embedded["costSource"] == "computed"


def test_usage_alone_and_usage_winning_over_the_response(rest: Rest) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
    assert rest.post("/api/usage-tracking/track-usage", {"key": "companyC", "usage": usage}).status_code == 200
    both = {"key": "companyC", "usage": usage, "openAiResponse": CHAT_COMPLETION}
    assert rest.post("/api/usage-tracking/track-usage", both).status_code == 200
    winner, alone = rest.items()
    assert (alone["inputTokens"], alone["outputTokens"], alone["totalTokens"]) == (100, 50, 150)
    assert "provider" not in alone and alone["costSource"] == "unknown"  # no model: never a silent 0
    assert (winner["inputTokens"], winner["outputTokens"], winner["totalTokens"]) == (100, 50, 150)
    assert winner["responseModel"] == "gpt-4o-mini-2024-07-18" and "cacheReadTokens" not in winner
    assert Decimal(winner["costUsd"]) == price("gpt-4o-mini", CREATED_AT, input_tokens=100, output_tokens=50)


def test_query_is_stored_only_with_content_capture(tmp_path: Path) -> None:
    usage = {"processors": {"usage": {"content_capture": True, "content_max_chars": 10}}}
    with running_collector(make_config(tmp_path, **usage)) as running:
        rest = Rest(running)
        assert rest.post("/api/usage-tracking/track-usage", EXAMPLE).status_code == 200
        assert [record.query for record in running.records()] == ["How do I r"]
        rest.close()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"openAiResponse": CHAT_COMPLETION}, "key: Field required"),
        ({"key": "", "openAiResponse": CHAT_COMPLETION}, "key must not be empty"),
        ({"key": "companyA"}, "usage or openAiResponse is required"),
        ({"key": "companyA", "tags": "support"}, "tags: Input should be a valid list"),
        ({"key": "companyA", "tags": [1], "usage": {}}, "tags.0: Input should be a valid string"),
        ({"key": "companyA", "usage": {"prompt_tokens": -3}}, "usage.prompt_tokens: Input should be greater than"),
        ({"key": "companyA", "openAiResponse": {"model": "gpt-4o-mini"}}, "openAiResponse: Missing value at `usage`"),
        ({"key": "companyA", "openAiResponse": {**CHAT_COMPLETION, "usage": {"prompt_tokens": 1.5,
          "completion_tokens": 2}}}, "openAiResponse.usage.input_tokens must be a non-negative integer"),
        ({"key": "companyA", "openAiResponse": [CHAT_COMPLETION]}, "openAiResponse: Input should be a valid dictionary"),
    ],
)
def test_invalid_call_is_400_naming_the_field(shared_rest: Rest, body: dict[str, Any], error: str) -> None:
    answer = shared_rest.post("/api/usage-tracking/track-usage", body)
    assert answer.status_code == 400
    assert answer.json()["ok"] is False and error in answer.json()["error"], answer.json()
    assert shared_rest.items() == []


def test_bearer_key(auth_rest: Rest) -> None:
    key, _ = auth_rest.key("acme")
    assert auth_rest.post("/api/usage-tracking/track-usage", EXAMPLE).status_code == 401
    assert auth_rest.post("/api/usage-tracking/track-usage", EXAMPLE, key=key).status_code == 200
    assert [item["workspace"] for item in auth_rest.items(key)] == ["acme"]
