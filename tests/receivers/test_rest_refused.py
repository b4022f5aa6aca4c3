"""A record the store refuses (a value it cannot hold: PostgreSQL takes no NUL character in text)
reaches the REST client as that endpoint's error for an invalid item, worded as OTLP's partial
success words it, is counted as rejected, and is never answered as accepted; the rest of a batch
is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import make_config, running_collector
from tests.postgres_server import PostgresServer
from tests.receivers.conftest import Rest

NUL = "nul\x00byte"  # valid JSON text ("\u0000"), which PostgreSQL cannot store
WHY = "the store cannot hold it"
REJECTED = "spanmeter_rejected_spans_total"


@pytest.fixture(scope="module")
def pg_rest(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    storage = {"postgres": {"dsn": postgres.new_database()}}
    with running_collector(make_config(tmp_path_factory.mktemp("refused"), storage=storage)) as running:
        client = Rest(running)
        yield client
        client.close()


def refused_error(message: str, key: str) -> None:
    assert message.startswith(f"record {key!r}: {WHY} ("), message
    assert "NUL" in message


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/v1/sdk/track", {"meter_token": "0b8f5a3e-2c4d-4e8f-9a1b-7c6d5e4f3a2b", "customer_external_id": NUL,
                               "quantity": 1, "idempotency_key": "flux-1"}, {}, 202),
        ("/api/ingest", {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 5,
                         "metadata": {"customer_id": NUL}}, {"idempotency-key": "llm-1"}, 201),
        ("/api/usage-tracking/track-usage", {"key": NUL, "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
         {"idempotency-key": "spryng-1"}, 200),
        ("/api/usage/track", {"event_name": "FIRST_API_CALL", "developer_id": NUL, "idempotencyKey": "tk-1"}, {}, 202),
    ],
)  # fmt: skip
def test_a_refused_record_is_a_400_never_accepted(
    pg_rest: Rest, path: str, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    key = body.get("idempotency_key") or body.get("idempotencyKey") or headers["idempotency-key"]
    rejected = pg_rest.running.metric(REJECTED)
    refused = pg_rest.post(path, body, headers=headers)
    assert refused.status_code == 400
    answer = refused.json()
    assert answer["ok"] is False
    if path == "/api/ingest":  # LLMtrack's exact message, the cause in `details`
        assert answer["error"] == "Invalid payload"
        refused_error(answer["details"], key)
    else:
        refused_error(answer["error"], key)
    assert pg_rest.running.metric(REJECTED) == rejected + 1
    assert not [item for item in pg_rest.items() if item["idempotencyKey"] == key]
    # The same request with a value the store holds is stored: the key was not taken by the refusal.
    fixed = pg_rest.post(path, _replace(body, NUL, "acme"), headers=headers)
    assert fixed.status_code == status, fixed.text
    assert fixed.json()["ok"] is True and fixed.json().get("duplicate", False) is False
    assert [item["idempotencyKey"] for item in pg_rest.items() if item["idempotencyKey"] == key] == [key]


def test_a_refused_event_of_a_batch_is_an_error_by_index_and_the_rest_is_stored(pg_rest: Rest) -> None:
    events = [
        {"event_name": "SDK_INIT", "developer_id": "dev-1", "idempotencyKey": "batch-0"},
        {"event_name": "SDK_INIT", "developer_id": NUL, "idempotencyKey": "batch-1"},
        {"event_name": "SDK_INIT"},  # invalid: no developer
        {"event_name": "SDK_INIT", "email": NUL, "idempotencyKey": "batch-3"},
        {"event_name": "SDK_INIT", "developer_id": "dev-4", "idempotencyKey": "batch-4"},
    ]
    rejected = pg_rest.running.metric(REJECTED)
    answer = pg_rest.post("/api/usage/track/batch", {"events": events})
    assert answer.status_code == 202
    body = answer.json()
    assert (body["ok"], body["accepted"], body["duplicates"]) == (True, 2, 0)
    assert [error["index"] for error in body["errors"]] == [1, 2, 3]
    refused_error(body["errors"][0]["error"], "batch-1")
    assert body["errors"][1]["error"] == "events[2]: developer_id or email is required"
    refused_error(body["errors"][2]["error"], "batch-3")
    assert pg_rest.running.metric(REJECTED) == rejected + 2
    stored = sorted(item["idempotencyKey"] for item in pg_rest.items() if item["idempotencyKey"].startswith("batch-"))
    assert stored == ["batch-0", "batch-4"]


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return new if value == old else value
