"""Product events and meters: `event` and `meter` records from spans, span events and log records."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from spanmeter.convert import attributes as A
from spanmeter.convert.values import (
    META,
    Facts,
    InvalidSpan,
    as_str_list,
    get_str,
    lookup,
)
from spanmeter.record import Product, UsageRecord
from spanmeter.usage_schema import event_family, meter_quantity

_PRODUCT_FACTS = tuple(f"product_{name}" for name in A.PRODUCT_FIELDS)


def event_record(
    layers: Sequence[Facts], common: dict[str, Any], key: str, occurred_at: int, limit: int, *, max_meta_keys: int
) -> UsageRecord:
    """An `event` record; `layers[0]` holds the event name (span, span event or log record)."""
    name = get_str(layers[:1], "event_name", limit)
    if name is None:
        raise InvalidSpan(f"{A.EVENT_NAME} must not be empty")
    family = get_str(layers, "event_family", limit)
    product = [get_str(layers, fact, limit) for fact in _PRODUCT_FACTS]
    return new_event_record(
        key,
        occurred_at,
        common,
        name=name,
        family=None if family is None else event_family(A.EVENT_FAMILY, family, InvalidSpan),
        product=Product(*product) if any(product) else None,
        source=get_str(layers, "source", limit),
        campaign_id=get_str(layers, "campaign_id", limit),
        tags=read_tags(layers, limit),
        meta=read_meta(layers, limit, max_meta_keys),
    )


def new_event_record(
    key: str,
    occurred_at: int,
    common: dict[str, Any],
    *,
    name: str,
    family: str | None = None,
    product: Product | None = None,
    source: str | None = None,
    campaign_id: str | None = None,
    tags: list[str] | None = None,
    meta: dict[str, str] | None = None,
) -> UsageRecord:
    """An `event` record from values already read and checked (spans, log records, REST bodies)."""
    return UsageRecord(
        idempotency_key=key,
        kind="event",
        type=name,
        occurred_at=occurred_at,
        event_name=name,
        event_family=family,
        product=product,
        source=source,
        campaign_id=campaign_id,
        tags=[] if tags is None else tags,
        meta={} if meta is None else meta,
        **common,
    )


def meter_record(
    layers: Sequence[Facts], common: dict[str, Any], key: str, occurred_at: int, limit: int, *, max_meta_keys: int
) -> UsageRecord:
    meter = get_str(layers[:1], "meter", limit)
    if meter is None:
        raise InvalidSpan(f"{A.QUANTITY} is set but {A.METER} is missing")
    raw = lookup(layers[:1], "quantity")
    if raw is None:
        raise InvalidSpan(f"{A.METER} is set but {A.QUANTITY} is missing")
    return new_meter_record(
        key,
        occurred_at,
        common,
        meter=meter,
        quantity=meter_quantity(A.QUANTITY, raw[1], InvalidSpan),
        tags=read_tags(layers, limit),
        meta=read_meta(layers, limit, max_meta_keys),
    )


def new_meter_record(
    key: str,
    occurred_at: int,
    common: dict[str, Any],
    *,
    meter: str,
    quantity: Decimal,
    tags: list[str] | None = None,
    meta: dict[str, str] | None = None,
) -> UsageRecord:
    """A `meter` record from values already read and checked (`quantity` by `meter_quantity`)."""
    return UsageRecord(
        idempotency_key=key,
        kind="meter",
        type=meter,
        occurred_at=occurred_at,
        meter=meter,
        quantity=quantity,
        tags=[] if tags is None else tags,
        meta={} if meta is None else meta,
        **common,
    )


def read_tags(layers: Sequence[Facts], limit: int) -> list[str]:
    found = lookup(layers, "tags")
    return as_str_list(A.TAGS, found[1], limit) if found else []


def read_meta(layers: Sequence[Facts], limit: int, max_keys: int) -> dict[str, str]:
    """`usage.meta.<key>` attributes; the nearest layer (span before resource) wins per key. At most
    `max_keys` keys (processors::usage::max_meta_keys), each key and value at most `limit` characters."""
    meta: dict[str, str] = {}
    for facts in reversed(layers):
        held = facts.get(META)
        if held is None:
            continue
        for key, value in held[2].items():
            text = value if isinstance(value, str) else str(value)
            if len(text) > limit:
                raise InvalidSpan(f"{A.META_PREFIX}{key[:80]} is {len(text)} characters long; the limit is {limit}")
            if len(key) > limit:
                raise InvalidSpan(f"the key {A.META_PREFIX}{key[:40]}... is {len(key)} characters long; the limit is {limit}")
            meta[key] = text
    if len(meta) > max_keys:
        raise InvalidSpan(f"{len(meta)} {A.META_PREFIX}* attributes; the limit is {max_keys} per record")
    return meta
