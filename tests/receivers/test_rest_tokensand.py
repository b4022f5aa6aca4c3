"""tokens&-compatible ingest: track, dry-run and batch, answered as the contract says, stored as
`event` records readable through the records API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.receivers.conftest import Rest

FIRST_API_CALL: dict[str, Any] = {
    "event_name": "FIRST_API_CALL",
    "developer_id": "dev_42",
    "email": "ada@company.com",
    "event_family": "activation",
    "product": {"id": "prod_api", "name": "Payments API", "type": "API", "version": "2"},
    "account_domain": "www.Company.com",
    "source": "SDK",
    "campaignId": "launch-week",
    "occurredAt": "2026-11-23T12:00:00Z",
    "idempotencyKey": "dev_42:first_api_call",
}


def test_first_api_call_is_stored_once_and_readable(rest: Rest) -> None:
    first = rest.post("/api/usage/track", FIRST_API_CALL)
    assert first.status_code == 202
    body = first.json()
    assert body == {"ok": True, "id": body["id"], "duplicate": False} and body["id"]

    again = rest.post("/api/usage/track", FIRST_API_CALL)
    assert again.status_code == 202
    assert again.json() == {"ok": True, "id": body["id"], "duplicate": True}

    [item] = rest.items()
    assert item["id"] == body["id"]
    assert item["kind"] == "event" and item["type"] == item["eventName"] == "FIRST_API_CALL"
    assert item["eventFamily"] == "activation"
    assert item["userId"] == "dev_42" and item["email"] == "ada@company.com"
    assert item["accountDomain"] == "company.com"
    assert item["product"] == {"id": "prod_api", "name": "Payments API", "type": "API", "version": "2"}
    assert item["source"] == "SDK" and item["campaignId"] == "launch-week"
    assert item["occurredAt"] == "2026-11-23T12:00:00.000000Z"
    assert item["idempotencyKey"] == "dev_42:first_api_call"
    assert item["count"] == 1


def test_segment_track_payload_is_the_same_event(rest: Rest) -> None:
    segment = {
        "type": "track",
        "event": "FIRST_API_CALL",
        "userId": "dev_42",
        "properties": {
            "event_family": "ACTIVATION",
            "account_domain": "company.com",
            "product_id": "prod_api",
            "product_name": "Payments API",
            "campaignId": "launch-week",
            "source": "SDK",
        },
        "context": {"traits": {"email": "ada@company.com"}},
        "messageId": "msg-1",
        "timestamp": "2026-11-23T12:00:00Z",
    }
    assert rest.post("/api/usage/track", segment).json()["duplicate"] is False
    assert rest.post("/api/usage/track", segment).json()["duplicate"] is True  # messageId is the key
    [item] = rest.items()
    assert (item["eventName"], item["eventFamily"], item["userId"], item["email"]) == (
        "FIRST_API_CALL", "activation", "dev_42", "ada@company.com"
    )
    assert item["accountDomain"] == "company.com" and item["campaignId"] == "launch-week"
    assert item["product"] == {"id": "prod_api", "name": "Payments API"}
    assert item["idempotencyKey"] == "msg-1" and item["occurredAt"].startswith("2026-11-23T12:00:00")


def test_without_idempotency_key_every_event_is_new(rest: Rest) -> None:
    event = {"event_name": "DOCS_OPEN", "developer_id": "dev_1", "event_family": "intent"}
    ids = {rest.post("/api/usage/track", event).json()["id"] for _ in range(3)}
    assert len(ids) == 3 and len(rest.items()) == 3


def test_dry_run_normalises_and_stores_nothing(rest: Rest) -> None:
    answer = rest.post(
        "/api/usage/track/dry-run",
        {**FIRST_API_CALL, "event_family": "Activation", "account_domain": "https://www.Bücher.de/pricing"},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "ok": True,
        "valid": True,
        "event": {
            **FIRST_API_CALL,
            "account_domain": "xn--bcher-kva.de",
            "occurredAt": "2026-11-23T12:00:00.000000Z",
        },
    }
    invalid = rest.post("/api/usage/track/dry-run", {"event_name": "X", "developer_id": "d", "event_family": "buying"})
    assert invalid.status_code == 400
    assert invalid.json() == {
        "ok": False,
        "errors": [
            "event_family must be one of intent, evaluation, activation, retention, expansion, commercial; got 'buying'"
        ],
    }
    missing = rest.post("/api/usage/track/dry-run", {"developer_id": 7})
    assert missing.status_code == 400
    assert missing.json()["errors"] == ["event_name: Field required", "developer_id: Input should be a valid string"]
    assert rest.items() == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"event_name": None}, "event_name: Input should be a valid string"),
        ({"event_name": ""}, "event_name must not be empty"),
        ({"developer_id": None, "email": None}, "developer_id or email is required"),
        ({"event_family": "purchase"}, "event_family must be one of intent, evaluation, activation"),
        ({"account_domain": "not a domain"}, "account_domain must be a domain name such as company.com"),
        ({"occurredAt": "yesterday"}, "occurredAt must be an ISO-8601 time"),
        ({"occurredAt": 1763900000}, "occurredAt: Input should be a valid string"),
        ({"product": "Payments API"}, "product: Input should be a valid dictionary"),
        ({"product": {"id": 5}}, "product.id: Input should be a valid string"),
        ({"type": "identify"}, "type: only 'track' calls are accepted"),
    ],
)
def test_invalid_event_is_400_naming_the_field(shared_rest: Rest, change: dict[str, Any], error: str) -> None:
    answer = shared_rest.post("/api/usage/track", {**FIRST_API_CALL, **change})
    assert answer.status_code == 400
    assert answer.json()["ok"] is False and error in answer.json()["error"]
    assert shared_rest.items() == []


def _batch_event(i: int) -> dict[str, Any]:
    return {"event_name": "API_CALL", "developer_id": f"dev_{i % 7}", "event_family": "retention",
            "idempotencyKey": f"call-{i}"}  # fmt: skip


def test_batch_of_500_with_3_invalid_stores_497_and_reports_3_by_index(rest: Rest) -> None:
    events = [_batch_event(i) for i in range(500)]
    events[7] = {"event_name": "API_CALL"}  # no developer
    events[250] = {**events[250], "event_family": "upsell"}
    events[499] = "API_CALL"
    answer = rest.post("/api/usage/track/batch", {"events": events})
    assert answer.status_code == 202
    body = answer.json()
    assert (body["ok"], body["accepted"], body["duplicates"]) == (True, 497, 0)
    assert [e["index"] for e in body["errors"]] == [7, 250, 499]
    assert body["errors"][0]["error"] == "events[7]: developer_id or email is required"
    assert body["errors"][1]["error"].startswith("events[250].event_family must be one of")
    assert body["errors"][2]["error"] == "events[499]: expected a JSON object"
    items = rest.items()
    assert len(items) == 497
    assert {item["idempotencyKey"] for item in items} == {f"call-{i}" for i in range(500)} - {"call-7", "call-250", "call-499"}

    again = rest.post("/api/usage/track/batch", {"events": events}).json()
    assert (again["accepted"], again["duplicates"], len(again["errors"])) == (0, 497, 3)
    assert len(rest.items()) == 497


def test_batch_as_bare_array_and_its_limits(rest: Rest) -> None:
    bare = rest.post("/api/usage/track/batch", [_batch_event(1), _batch_event(1), _batch_event(2)])
    assert bare.status_code == 202
    assert bare.json() == {"ok": True, "accepted": 2, "duplicates": 1, "errors": []}

    too_many = rest.post("/api/usage/track/batch", {"events": [_batch_event(i) for i in range(501)]})
    assert too_many.status_code == 400
    assert too_many.json() == {"ok": False, "error": "events: at most 500 events per batch; got 501"}
    not_a_list = rest.post("/api/usage/track/batch", {"events": {"event_name": "X"}})
    assert not_a_list.status_code == 400
    assert not_a_list.json()["error"].startswith("events: expected")
    assert len(rest.items()) == 2


def test_auth_on_needs_an_ingest_key_and_stores_in_its_workspace(auth_rest: Rest) -> None:
    event = {"event_name": "SDK_INIT", "developer_id": "dev_1"}
    missing = auth_rest.post("/api/usage/track", event)
    assert missing.status_code == 401 and missing.json() == {"ok": False, "error": "Missing API key"}
    key, _ = auth_rest.key("acme")
    assert auth_rest.post("/api/usage/track", event, key=key).status_code == 202
    [item] = auth_rest.items(key)
    assert item["workspace"] == "acme"
