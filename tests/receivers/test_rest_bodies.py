"""What every REST ingest endpoint does with bodies it cannot take: 415, 413, hostile JSON → 4xx
(never 500) and nothing stored; 503 with Retry-After when the store is full; the four families in
/openapi.json with their request and response schemas."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config, running_collector
from tests.receivers.conftest import Rest

VALID: dict[str, dict[str, Any]] = {
    "/api/usage/track": {"event_name": "SDK_INIT", "developer_id": "dev_1"},
    "/api/usage/track/dry-run": {"event_name": "SDK_INIT", "developer_id": "dev_1"},
    "/api/usage/track/batch": {"events": [{"event_name": "SDK_INIT", "developer_id": "dev_1"}]},
    "/api/ingest": {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 1, "completion_tokens": 1},
    "/api/v1/sdk/track": {"meter_token": "m", "customer_external_id": "c", "quantity": 1},
    "/api/usage-tracking/track-usage": {"key": "companyA", "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
}
PATHS = list(VALID)
DEEP = b'{"a":' * 2000 + b"1" + b"}" * 2000

HOSTILE: dict[str, bytes] = {
    "deep nesting": DEEP,
    "deep nesting in a field": json.dumps({"metadata": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}).encode(),
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "invalid UTF-8": b'{"event_name": "\xff\xfe", "key": "\xc3("}',
    "duplicate keys": b'{"event_name": "A", "event_name": "B", "key": "k", "key": "j"}',
    "NaN": b'{"quantity": NaN, "prompt_tokens": NaN}',
    "Infinity": b'{"quantity": Infinity, "cost": -Infinity}',
    "truncated": b'{"event_name": "A"',
    "empty": b"",
    "not an object": b'"hello"',
    "a number": b"42",
    "null": b"null",
    "wrong types": json.dumps({"event_name": 1, "developer_id": [], "provider": {}, "model": True,
                               "meter_token": 1.5, "quantity": "lots", "key": None, "events": "x"}).encode(),
    "huge string": json.dumps({name: "x" * 1_000_000 for name in (
        "event_name", "developer_id", "provider", "model", "meter_token", "customer_external_id", "key")} | {
        "quantity": 1, "usage": {"prompt_tokens": 1}}).encode(),
    "huge number": b'{"prompt_tokens": 1' + b"0" * 5000 + b', "quantity": 1e999999}',
    "lone surrogate": b'{"event_name": "\\ud800", "developer_id": "d", "provider": "\\udfff"}',
}


def _refs(schema: Any) -> set[str]:
    """Names of the component schemas a schema refers to."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if "$ref" in schema else set()
        return found.union(*(_refs(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(value) for value in schema))
    return set()


@pytest.mark.parametrize("path", PATHS)
def test_hostile_bodies_are_refused_and_nothing_is_stored(shared_rest: Rest, path: str) -> None:
    rest = shared_rest
    stored = len(rest.running.records())
    for name, content in HOSTILE.items():
        answer = rest.post(path, content=content)
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        body = answer.json()
        assert body["ok"] is False and (body.get("error") or body.get("errors")), (name, body)
    assert len(rest.running.records()) == stored
    assert rest.post(path, VALID[path]).status_code < 300  # the endpoint still works


@pytest.mark.parametrize("path", PATHS)
def test_wrong_content_type_is_415(shared_rest: Rest, path: str) -> None:
    rest = shared_rest
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/x-protobuf"):
        answer = rest.post(path, content=json.dumps(VALID[path]).encode(), headers={"content-type": content_type})
        assert answer.status_code == 415
        assert content_type in answer.json()["error"]
    no_type = rest.http.post(path, content=json.dumps(VALID[path]).encode())
    assert no_type.status_code == 415
    assert rest.post(path, VALID[path], headers={"content-type": "application/json; charset=utf-8"}).status_code < 300


def test_body_over_the_size_limit_is_413(tmp_path: Path) -> None:
    config = make_config(tmp_path, receivers={"otlp": {"max_request_bytes": 4096}})
    with running_collector(config) as running:
        rest = Rest(running)
        for path in PATHS:
            padded = {**VALID[path], "padding": "x" * 5000}
            answer = rest.post(path, padded)
            assert answer.status_code == 413, path
            assert "over the limit of 4096 bytes" in answer.json()["error"]
            bomb = gzip.compress(json.dumps(padded).encode())  # small on the wire, large inside
            answer = rest.post(path, content=bomb, headers={"content-encoding": "gzip"})
            assert answer.status_code == 413, path
            small = rest.post(path, content=gzip.compress(json.dumps(VALID[path]).encode()),
                              headers={"content-encoding": "gzip"})  # fmt: skip
            assert small.status_code < 300, (path, small.text)
        rest.close()


def test_a_batch_larger_than_the_write_queue_is_413_without_retry_and_stores_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path, storage={"sqlite": {"max_queued_records": 1}})
    with running_collector(config) as running:
        rest = Rest(running)
        events = [{"event_name": "A", "developer_id": f"d{i}"} for i in range(2)]
        answer = rest.post("/api/usage/track/batch", events)
        # It can never fit, so it is a permanent refusal: no Retry-After that clients would obey forever.
        assert answer.status_code == 413 and "retry-after" not in answer.headers
        assert "it can never be accepted" in answer.json()["error"]
        assert running.records() == []
        rest.close()


def test_openapi_documents_the_four_families(rest: Rest) -> None:
    document = rest.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    expected = {
        "/api/usage/track": ("202", {"TokensandEvent", "SegmentTrack"}),
        "/api/usage/track/dry-run": ("200", {"TokensandEvent", "SegmentTrack"}),
        "/api/usage/track/batch": ("202", {"TokensandBatch", "TokensandEvent", "SegmentTrack"}),
        "/api/ingest": ("201", {"LlmtrackEvent"}),
        "/api/v1/sdk/track": ("202", {"FluxrateTrack"}),
        "/api/usage-tracking/track-usage": ("200", {"SpryngtimeTrackUsage"}),
    }
    for path, (status, models) in expected.items():
        post = document["paths"][path]["post"]
        assert _refs(post["requestBody"]["content"]["application/json"]["schema"]) == models
        assert models <= set(schemas)
        assert "$ref" in json.dumps(post["responses"][status]["content"]["application/json"]["schema"])
        assert {"400", "401", "413", "415"} <= set(post["responses"])
        assert "422" not in post["responses"]
    assert set(schemas["LlmtrackEvent"]["required"]) == {"provider", "model"}
    assert schemas["FluxrateTrack"]["properties"]["quantity"]["type"] == "number"
    assert schemas["TokensandEvent"]["properties"]["event_family"]["anyOf"][0]["enum"][0] == "intent"
    assert "402" in document["paths"]["/api/ingest"]["post"]["responses"]
