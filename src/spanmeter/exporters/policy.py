"""How a target's HTTP answer becomes an outcome: one table per exporter type.

    POLICY = StatusPolicy(
        {400: DEAD, 422: DEAD, 401: PAUSED, 403: PAUSED, 402: LONG_BACKOFF},
        hints={401: "check the exporter's api_key"},
    )
    outcome = POLICY.outcome(response, endpoint)   # or POLICY.unreachable(error, endpoint)

2xx is delivered and a redirect pauses the exporter (spanmeter does not follow redirects: the
endpoint should be the final URL), whatever the table says. A status the table does not name is
retried with exponential back-off, honouring `Retry-After` (429, 5xx and anything unforeseen:
retrying is never wrong for records that must not be lost, and `max_elapsed_time` bounds it).
Network errors and timeouts are retried the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from spanmeter.exporters.base import Dead, Delivered, LongBackoff, Paused, RetryLater

BODY_CHARS: Final = 300  # of the target's answer, in reasons and logs


class Verdict(enum.Enum):
    DEAD = "dead"  # the records are refused for good: dead deliveries
    PAUSED = "paused"  # spanmeter's config is refused (key, URL): loud log, retried at max_interval
    LONG_BACKOFF = "long back-off"  # come back much later (402): retried at long_interval
    RETRY = "retry"  # a passing failure: exponential back-off, Retry-After honoured


DEAD: Final = Verdict.DEAD
PAUSED: Final = Verdict.PAUSED
LONG_BACKOFF: Final = Verdict.LONG_BACKOFF
RETRY: Final = Verdict.RETRY

# What the REST targets' contracts decide: a starting point a type's table spreads and extends.
REST_TABLE: Final[Mapping[int, Verdict]] = {400: DEAD, 422: DEAD, 401: PAUSED, 403: PAUSED, 402: LONG_BACKOFF}


def rest_policy(service: str, endpoint: str) -> StatusPolicy:
    """REST_TABLE and 404 paused (a wrong endpoint), with hints naming what to check: `service` is
    the target's name, `endpoint` what the exporter's endpoint should be."""
    key = f"{service} refuses the key: check the exporter's api_key"
    return StatusPolicy(
        {**REST_TABLE, 404: PAUSED},
        hints={
            401: key,
            403: key,
            402: f"the {service} account's plan limit is reached; the records wait",
            404: f"check the exporter's endpoint ({endpoint})",
        },
    )


@dataclass(frozen=True)
class StatusPolicy:
    table: Mapping[int, Verdict]  # status code -> verdict; codes not named are retried
    hints: Mapping[int, str] = field(default_factory=dict)  # status code -> what the operator should check

    def outcome(self, response: httpx.Response, endpoint: str) -> Delivered | RetryLater | LongBackoff | Paused | Dead:
        status = response.status_code
        if 200 <= status < 300:
            return Delivered()
        text = " ".join(response.text[:BODY_CHARS].split())
        said = f"HTTP {status} from {endpoint}" + (f": {text}" if text else "")
        hint = self.hints.get(status)
        if 300 <= status < 400 and status not in self.table:
            moved = f"redirected to {response.headers.get('location')}; set the endpoint to the final URL"
            return Paused(f"{said} ({hint or moved})")
        reason = f"{said} ({hint})" if hint else said
        verdict = self.table.get(status, RETRY)
        if verdict is DEAD:
            return Dead(reason)
        if verdict is PAUSED:
            return Paused(reason)
        wait = retry_after(response.headers.get("retry-after"))
        if verdict is LONG_BACKOFF:
            return LongBackoff(reason, wait)
        return RetryLater(reason, wait)

    @staticmethod
    def unreachable(error: httpx.HTTPError, endpoint: str) -> RetryLater:
        """The outcome of a request that got no answer."""
        if isinstance(error, httpx.TimeoutException):
            return RetryLater(f"no answer from {endpoint} within the timeout")
        return RetryLater(f"cannot reach {endpoint}: {error or type(error).__name__}")


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
