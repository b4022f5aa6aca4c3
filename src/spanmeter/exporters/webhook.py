"""The `webhook` exporter: each batch is one JSON POST, signed the Standard Webhooks way.

Body (https://www.standardwebhooks.com/, "payload structure"):

    {"type": "usage.records", "timestamp": "2026-11-23T12:00:00.000000Z",
     "data": {"exporter": "webhook/billing", "records": [<item>, ...]}}

Each item has the shape of the query API's items (`GET /api/v1/usage/records`, `UsageItem`):
the same reader parses both. Headers `webhook-id` (stable across retries of a batch: de-duplicate
on it; each record also carries its own `id` and `idempotencyKey`), `webhook-timestamp` (the
attempt's time, Unix seconds) and, with a `secret`, `webhook-signature` (`v1,<base64 HMAC-SHA256>`
by the `standardwebhooks` library; receivers verify with `Webhook(secret).verify(body, headers)`).

Answers (`POLICY`): 2xx delivered; 400, 413 and 422 (the receiver rejects the content; a retry
would send the same batch) dead; 401, 403, 404, 405, 410 and redirects paused (spanmeter's config
is wrong: key, secret or URL); 408, 409, 425, 429, 5xx, other codes and network errors retried,
honouring `Retry-After`.

Config (`webhook` or `webhook/<name>` under `exporters:`): `endpoint`, `secret`, `headers`,
`timeout`, and the keys every exporter has (exporters/settings.py); collector_config/webhook.yaml.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Final

import httpx
from pydantic import Field, field_validator
from standardwebhooks import Webhook

import spanmeter
from spanmeter.encoding import item_text
from spanmeter.exporters.base import Outcome
from spanmeter.exporters.policy import DEAD, PAUSED, StatusPolicy
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import HttpExporterConfig
from spanmeter.record import format_ns
from spanmeter.store.outbox import Claim, ItemOf

EVENT_TYPE: Final = "usage.records"
_SECRET_BYTES: Final = (24, 64)  # Standard Webhooks: secrets of 24 to 64 random bytes
_CREDENTIALS: Final = "the receiver refuses spanmeter's credentials: check the exporter's secret and headers"
_ENDPOINT: Final = "check the exporter's endpoint"

POLICY: Final = StatusPolicy(
    {400: DEAD, 413: DEAD, 422: DEAD, 401: PAUSED, 403: PAUSED, 404: PAUSED, 405: PAUSED, 410: PAUSED},
    hints={
        413: "the batch is too large for the receiver: lower the exporter's max_batch",
        401: _CREDENTIALS,
        403: _CREDENTIALS,
        404: _ENDPOINT,
        405: _ENDPOINT,
        410: _ENDPOINT,
    },
)


class WebhookConfig(HttpExporterConfig):
    endpoint: str = Field(description="http(s) URL each batch is POSTed to")
    secret: str | None = Field(
        None,
        description="Standard Webhooks secret (whsec_<base64>) that signs each request; `spanmeter exporters new-secret`",
    )
    headers: dict[str, str] = Field({}, description="extra request headers, e.g. an Authorization of the receiver")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = (
            f"not a Standard Webhooks secret: expected whsec_ and the base64 of {_SECRET_BYTES[0]}-{_SECRET_BYTES[1]}"
            " random bytes; make one with `spanmeter exporters new-secret`"
        )
        try:
            text = value.removeprefix("whsec_").rstrip("=")
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            Webhook(value)  # and the signing library takes it
        except (ValueError, binascii.Error, RuntimeError):
            raise ValueError(problem) from None
        if not _SECRET_BYTES[0] <= len(key) <= _SECRET_BYTES[1]:
            raise ValueError(problem)
        return value


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
        except httpx.HTTPError as error:
            return POLICY.unreachable(error, self.endpoint)
        return POLICY.outcome(response, self.endpoint)

    def close(self) -> None:
        self._client.close()


def create(name: str, config: WebhookConfig) -> WebhookExporter:
    return WebhookExporter(name, config.endpoint, secret=config.secret, headers=config.headers, timeout=config.timeout)


TYPE: Final = register("webhook", WebhookConfig, create)
