"""A fake Fluxrate for the exporter tests: a RestTarget (tests/fakes/rest_target.py) that checks
each request against the SDK endpoint's contract and answers like Fluxrate.

Contract (`POST /api/v1/sdk/track`, header `X-API-Key`): a JSON object with `meter_token` (UUID),
`customer_external_id` and `quantity` (> 0) required, `timestamp` (ISO-8601), `idempotency_key`
and `metadata` (key-value) optional, nothing else. Answer: 202 `{"ok": true, "duplicate": bool}`;
a repeated idempotency key is de-duplicated (`duplicate: true`, not counted again).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from tests.fakes.rest_target import Answer, Request, RestTarget

API_KEY: Final = "org_live_test"
PATH: Final = "/api/v1/sdk/track"
FIELDS: Final = {"meter_token", "customer_external_id", "quantity", "timestamp", "idempotency_key", "metadata"}
REQUIRED: Final = {"meter_token", "customer_external_id", "quantity"}
TOKENS: Final = {
    "chat": "0b6f6a4e-8f3c-4c1e-9a57-2f1d2c3b4a5e",
    "api_calls": "5d2c7e10-3b1a-4f6e-8c9d-0a1b2c3d4e5f",
    "report_exported": "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4",
}


def check_fluxrate(request: Request) -> str | None:
    if (request.method, request.path) != ("POST", PATH):
        return f"expected POST {PATH}"
    if request.headers.get("x-api-key") != API_KEY:
        return f"X-API-Key {request.headers.get('x-api-key')!r}"
    if request.headers.get("content-type") != "application/json" or "authorization" in request.headers:
        return f"headers {request.headers}"
    body = request.body
    if not isinstance(body, dict):
        return f"not a JSON object: {request.raw[:100]!r}"
    if set(body) - FIELDS or REQUIRED - set(body):
        return f"fields {sorted(body)}: not in the contract {sorted(set(body) - FIELDS)}, missing {REQUIRED - set(body)}"
    try:
        uuid.UUID(body["meter_token"])
        datetime.fromisoformat(body.get("timestamp", "2026-01-01T00:00:00Z"))
    except (TypeError, ValueError, AttributeError) as error:
        return f"meter_token or timestamp: {error}"
    quantity = body["quantity"]
    if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or quantity <= 0:
        return f"quantity {quantity!r}: a number > 0"
    if not isinstance(body["customer_external_id"], str) or not body["customer_external_id"]:
        return "customer_external_id: a non-empty string"
    if not isinstance(body.get("idempotency_key", ""), str):
        return "idempotency_key: a string"
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return f"metadata {metadata!r}: key-value"
    return None


def fluxrate(target: RestTarget) -> RestTarget:
    """Answer like Fluxrate (202, duplicate when the key was accepted before) unless scripted."""
    seen: set[str] = set()

    def answer(request: Request) -> Answer | None:
        if target.script:  # answer_next(...) first
            return None
        key = request.body.get("idempotency_key")
        duplicate = key in seen
        if key is not None:
            seen.add(key)
        return 202, {}, {"ok": True, "duplicate": duplicate}

    target.respond(answer)
    return target


def keys(request: Request) -> list[str]:
    return [request.body["idempotency_key"]]


def exact(request: Request) -> dict[str, Any]:
    """The body with its numbers as Decimals, read from the raw bytes (no float rounding)."""
    body: dict[str, Any] = json.loads(request.raw, parse_float=Decimal)
    return body


def totals(target: RestTarget) -> dict[tuple[str, str], Decimal]:
    """What Fluxrate counted per (customer, meter token): each idempotency key once."""
    counted: dict[str, dict[str, Any]] = {}
    for request in target.accepted:
        body = exact(request)
        counted.setdefault(body["idempotency_key"], body)
    found: dict[tuple[str, str], Decimal] = {}
    for body in counted.values():
        at = (body["customer_external_id"], body["meter_token"])
        found[at] = found.get(at, Decimal(0)) + Decimal(body["quantity"])
    return found


def resent_differently(target: RestTarget) -> list[str]:
    """Idempotency keys that arrived with different bodies (a changed total would be lost)."""
    bodies: dict[str, set[str]] = {}
    for request in target.accepted:
        bodies.setdefault(request.body["idempotency_key"], set()).add(request.raw.decode())
    return [key for key, found in bodies.items() if len(found) > 1]


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": url, "api_key": API_KEY, "meter_tokens": dict(TOKENS), **extra}


def all_of(requests: Iterable[Request]) -> list[dict[str, Any]]:
    return [exact(r) for r in requests]
