"""The usage record: one per billable fact.

`proto/spanmeter/v1/usage.proto` is the source of truth for the fields; `UsageRecord` mirrors it
field by field (tests/test_record.py checks that the names agree with the proto and the SQL schema).
Two representation choices, both for the hot path:
- times (`occurred_at`, `received_at`) are integer nanoseconds since the Unix epoch, UTC, as OTLP
  carries them; `to_dict` renders them as RFC 3339 strings;
- money (`cost_usd`, `reported_cost_usd`) and `quantity` are `Decimal`, exact; storage keeps
  money as integer nano-USD.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Final

KINDS: Final = ("llm", "event", "meter")
COST_SOURCES: Final = ("computed", "override", "reported", "unknown", "none")
STATUSES: Final = ("success", "error")
RELATION_FIELDS: Final = (
    "conversation_id",
    "message_id",
    "task_id",
    "contact_id",
    "blueprint_id",
    "bot_id",
    "dataset_id",
    "skillset_id",
    "ability_id",
)
TOKEN_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@dataclass(slots=True, frozen=True)
class Product:
    id: str | None = None
    name: str | None = None
    type: str | None = None
    version: str | None = None
    category: str | None = None


@dataclass(slots=True)
class UsageRecord:
    # identity
    idempotency_key: str
    kind: str
    type: str
    occurred_at: int  # ns since epoch, UTC
    workspace: str = "default"
    id: str = ""  # assigned by new_record_id() when the record is built
    received_at: int = 0
    latency_ms: int | None = None
    # who
    customer_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    account_domain: str | None = None
    # LLM call
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    operation: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    # cost
    cost_usd: Decimal | None = None
    cost_source: str = "none"
    price_ref: str | None = None
    reported_cost_usd: Decimal | None = None
    # outcome
    status: str = "success"
    error_type: str | None = None
    # product event
    event_name: str | None = None
    event_family: str | None = None
    product: Product | None = None
    source: str | None = None
    campaign_id: str | None = None
    # meter
    meter: str | None = None
    quantity: Decimal | None = None
    # relations
    conversation_id: str | None = None
    message_id: str | None = None
    task_id: str | None = None
    contact_id: str | None = None
    blueprint_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    ability_id: str | None = None
    feature: str | None = None
    tags: list[str] = field(default_factory=list)
    # links
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None
    # extra
    meta: dict[str, str] = field(default_factory=dict)
    query: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the proto's field names: times RFC 3339 UTC, money decimal strings."""
        out = {name: getattr(self, name) for name in RECORD_FIELDS}
        out["occurred_at"] = format_ns(self.occurred_at)
        out["received_at"] = format_ns(self.received_at)
        for name in ("cost_usd", "reported_cost_usd", "quantity"):
            if out[name] is not None:
                out[name] = decimal_string(out[name])
        if self.product is not None:
            out["product"] = {name: getattr(self.product, name) for name in PRODUCT_FIELDS}
        out["tags"] = list(self.tags)
        out["meta"] = dict(self.meta)
        return out


RECORD_FIELDS: Final = tuple(f.name for f in fields(UsageRecord))
PRODUCT_FIELDS: Final = tuple(f.name for f in fields(Product))


def decimal_string(value: Decimal) -> str:
    """A decimal as plain digits, never exponent notation: '0', '12.5', '0.00000024'."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with microseconds (truncated), e.g. 2026-11-23T12:00:00.123456Z."""
    seconds, rest = divmod(ns, 1_000_000_000)  # in integers: a float has no room for the microseconds
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{rest // 1000:06d}Z"


_VERSION_7: Final = 7 << 76  # UUIDv7 bits: version 7 and variant 0b10 (RFC 9562)
_VARIANT: Final = 0b10 << 62


class _UUIDv7:
    """UUIDv7 ids (RFC 9562): time-ordered, monotonic within this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The next free stamp: 48-bit milliseconds and a 12-bit counter as one integer, so that a
        # counter past 0xFFF carries into the next millisecond and order holds in any case.
        self._next = 0
        self._random = random.Random(os.urandom(16))

    def __call__(self) -> str:
        return self.many(1)[0]

    def many(self, count: int) -> list[str]:
        """`count` ids in order: one clock read and one lock for a whole request."""
        with self._lock:
            first = max((time.time_ns() // 1_000_000) << 12, self._next)  # never behind the last id
            self._next = first + count
        bits = self._random.getrandbits  # unique, not secret: no syscall per id
        ids = []
        for stamp in range(first, first + count):
            # 48-bit ms, version 7, 12-bit counter, variant 0b10, 62 random bits
            h = f"{(stamp >> 12) << 80 | _VERSION_7 | (stamp & 0xFFF) << 64 | _VARIANT | bits(62):032x}"
            ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        return ids


new_record_id = _UUIDv7()
