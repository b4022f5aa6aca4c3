"""Product events and meters: `event` and `meter` records from spans, span events and log records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spanmeter.convert import attributes as A
from spanmeter.convert.values import MAX_QUANTITY, Attrs, InvalidSpan, as_decimal, as_str_list, first, get_str
from spanmeter.record import EVENT_FAMILIES, Product, UsageRecord


def event_record(
    layers: Sequence[Attrs], common: dict[str, Any], key: str, occurred_at: int, limit: int
) -> UsageRecord:
    """An `event` record; `layers[0]` holds `usage.event.name` (span, span event or log record)."""
    name = get_str(layers[:1], (A.EVENT_NAME,), limit) or get_str(layers[:1], A.LOG_EVENT_NAME, limit)
    if name is None:
        raise InvalidSpan(f"{A.EVENT_NAME} must not be empty")
    family = get_str(layers, (A.EVENT_FAMILY,), limit)
    if family is not None:
        family = family.lower()
        if family not in EVENT_FAMILIES:
            raise InvalidSpan(f"{A.EVENT_FAMILY} must be one of {', '.join(EVENT_FAMILIES)}; got {family[:40]!r}")
    product = Product(**{f: get_str(layers, (attr,), limit) for f, attr in A.PRODUCT_FIELDS.items()})
    return UsageRecord(
        idempotency_key=key,
        kind="event",
        type=name,
        occurred_at=occurred_at,
        event_name=name,
        event_family=family,
        product=product if any(getattr(product, f) for f in A.PRODUCT_FIELDS) else None,
        source=get_str(layers, (A.SOURCE,), limit),
        campaign_id=get_str(layers, (A.CAMPAIGN_ID,), limit),
        tags=read_tags(layers, limit),
        meta=read_meta(layers, limit),
        **common,
    )


def meter_record(
    layers: Sequence[Attrs], common: dict[str, Any], key: str, occurred_at: int, limit: int
) -> UsageRecord:
    meter = get_str(layers[:1], (A.METER,), limit)
    if meter is None:
        raise InvalidSpan(f"{A.QUANTITY} is set but {A.METER} is missing")
    raw = layers[0].get(A.QUANTITY)
    if raw is None:
        raise InvalidSpan(f"{A.METER} is set but {A.QUANTITY} is missing")
    quantity = as_decimal(A.QUANTITY, raw, limit=MAX_QUANTITY, positive=True)
    return UsageRecord(
        idempotency_key=key,
        kind="meter",
        type=meter,
        occurred_at=occurred_at,
        meter=meter,
        quantity=quantity,
        tags=read_tags(layers, limit),
        meta=read_meta(layers, limit),
        **common,
    )


def read_tags(layers: Sequence[Attrs], limit: int) -> list[str]:
    found = first(layers, (A.TAGS,))
    return as_str_list(A.TAGS, found[1], limit) if found else []


def read_meta(layers: Sequence[Attrs], limit: int) -> dict[str, str]:
    """`usage.meta.<key>` attributes; the nearest layer (span before resource) wins per key."""
    meta: dict[str, str] = {}
    for attrs in reversed(layers):
        for name, value in attrs.items():
            if name.startswith(A.META_PREFIX) and value is not None:
                key = name[len(A.META_PREFIX) :]
                if key:
                    meta[key] = str(value) if not isinstance(value, str) else value
    for key, value in meta.items():
        if len(value) > limit:
            raise InvalidSpan(f"{A.META_PREFIX}{key} is {len(value)} characters long; the limit is {limit}")
    return meta
