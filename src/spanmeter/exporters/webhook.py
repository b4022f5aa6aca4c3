"""The `webhook` exporter: each batch is one JSON POST, signed the Standard Webhooks way.

Body (https://www.standardwebhooks.com/, "payload structure"):

    {"type": "usage.records", "timestamp": "2026-11-23T12:00:00.000000Z",
     "data": {"exporter": "webhook/billing", "records": [<item>, ...]}}

Each item has the shape of the query API's items (`GET /api/v1/usage/records`, `UsageItem`):
the same reader parses both. Headers `webhook-id` (stable across retries of a batch: de-duplicate
on it; each record also carries its own `id` and `idempotencyKey`), `webhook-timestamp` (the
attempt's time, Unix seconds) and, with a `secret`, `webhook-signature` (`v1,<base64 HMAC-SHA256>`
by the `standardwebhooks` library; receivers verify with `Webhook(secret).verify(body, headers)`).

Answers: 2xx delivered; 400, 413 and 422 (the receiver rejects the content; a retry would send
the same batch) dead; 401, 403, 404, 405,
410 and redirects paused (spanmeter's config is wrong: key, secret or URL); 408, 409, 425, 429, 5xx,
other codes and network errors retried, honouring `Retry-After`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx
from standardwebhooks import Webhook

import spanmeter
from spanmeter.encoding import item_text
from spanmeter.exporters.base import Dead, Delivered, Outcome, Paused, RetryLater
from spanmeter.record import format_ns
from spanmeter.store.outbox import Claim, ItemOf

EVENT_TYPE: Final = "usage.records"
_DEAD: Final = frozenset({400, 413, 422})
_PAUSED: Final = frozenset({401, 403, 404, 405, 410})
_BODY_CHARS: Final = 300  # of the receiver's answer, in reasons and logs


class WebhookExporter:
    def __init__(
        self,
        name: str,
        endpoint: str,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.item_of: ItemOf | None = item_text
        self._signer = Webhook(secret) if secret else None
        self._headers = {
            "content-type": "application/json",
            "user-agent": f"spanmeter/{spanmeter.__version__}",
            **(headers or {}),
        }
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def body(self, claim: Claim) -> str:
        # The items are JSON texts already (built by the store): spliced in, not parsed again.
        head = json.dumps({"type": EVENT_TYPE, "timestamp": format_ns(time.time_ns())}, separators=(",", ":"))
        return f'{head[:-1]},"data":{{"exporter":{json.dumps(self.name)},"records":[{",".join(claim.items)}]}}}}'

    def signed_headers(self, message_id: str, body: str) -> dict[str, str]:
        now = datetime.now(UTC)
        headers = {**self._headers, "webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp()))}
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(message_id, now, body)
        return headers

    def send(self, claim: Claim) -> Outcome:
        body = self.body(claim)
        try:
            response = self._client.post(
                self.endpoint, content=body.encode(), headers=self.signed_headers(claim.message_id, body)
            )
        except httpx.TimeoutException:
            return RetryLater(f"no answer from {self.endpoint} within the timeout")
        except httpx.HTTPError as error:
            return RetryLater(f"cannot reach {self.endpoint}: {error or type(error).__name__}")
        return outcome_of(response, self.endpoint)

    def close(self) -> None:
        self._client.close()


def outcome_of(response: httpx.Response, endpoint: str) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Delivered()
    text = " ".join(response.text[:_BODY_CHARS].split())
    said = f"HTTP {status} from {endpoint}" + (f": {text}" if text else "")
    if status == 413:
        return Dead(f"{said} (the batch is too large for the receiver: lower the exporter's max_batch)")
    if status in _DEAD:
        return Dead(said)
    if status in (401, 403):
        return Paused(f"{said} (the receiver refuses spanmeter's credentials: check the exporter's secret and headers)")
    if status in _PAUSED:
        return Paused(f"{said} (check the exporter's endpoint)")
    if 300 <= status < 400:
        return Paused(f"{said} (redirected to {response.headers.get('location')}; set the endpoint to the final URL)")
    return RetryLater(said, retry_after(response.headers.get("retry-after")))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
