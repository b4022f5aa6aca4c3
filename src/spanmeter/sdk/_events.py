"""Product events and meters: one short span each, with the attributes spanmeter reads.

The span is a child of the current span (same trace) and gets the usage context stamped like any
other span; arguments given here win over the context. Arguments are checked with the collector's
own rules (spanmeter/usage_schema.py), so what is refused is refused here, naming the argument.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from spanmeter import usage_schema as U
from spanmeter.sdk._context import MetaValue, meta_attributes

log = logging.getLogger(__name__)

TRACER_NAME: Final = "spanmeter.sdk"
EVENT_SPAN: Final = "usage.event"
METER_SPAN: Final = "usage.meter"
_warned = threading.Event()


def track_event(
    name: str,
    *,
    family: str | None = None,
    customer_id: str | None = None,
    developer_id: str | None = None,
    email: str | None = None,
    account_domain: str | None = None,
    product: str | Mapping[str, str] | None = None,
    source: str | None = None,
    campaign_id: str | None = None,
    idempotency_key: str | None = None,
    **meta: MetaValue,
) -> None:
    """Record a product event (an `event` record named `name`).

    family: intent, evaluation, activation, retention, expansion or commercial (any case).
    developer_id: the user who did it (`usage.user.id`). product: a product id, or a mapping with
    any of id, name, type, version, category. idempotency_key: the same key is stored once, so a
    retried event is not counted twice. Keyword arguments beyond these become `usage.meta.<key>`.
    """
    attributes: dict[str, AttributeValue] = {U.EVENT_NAME: U.text_value("name", name)}
    if family is not None:
        attributes[U.EVENT_FAMILY] = U.event_family("family", U.text_value("family", family))
    for arg, attribute, value in (
        ("customer_id", U.CUSTOMER_ID, customer_id),
        ("developer_id", U.USER_ID, developer_id),
        ("email", U.USER_EMAIL, email),
        ("account_domain", U.ACCOUNT_DOMAIN, account_domain),
        ("source", U.SOURCE, source),
        ("campaign_id", U.CAMPAIGN_ID, campaign_id),
        ("idempotency_key", U.IDEMPOTENCY_KEY, idempotency_key),
    ):
        if value is not None:
            attributes[attribute] = U.text_value(arg, value)
    if product is not None:
        attributes.update(_product(product))
    attributes.update(meta_attributes(meta))
    _emit(EVENT_SPAN, attributes)


def meter(
    name: str,
    quantity: float | Decimal | str,
    *,
    customer_id: str | None = None,
    idempotency_key: str | None = None,
    **meta: MetaValue,
) -> None:
    """Record `quantity` (> 0, at most 10^15) units of the meter `name` (a `meter` record).

    Decimals and numeric strings are sent as text, so 0.1 arrives as exactly 0.1."""
    number = U.meter_quantity("quantity", quantity)
    value: AttributeValue = quantity if isinstance(quantity, (int, float)) else str(number)
    attributes: dict[str, AttributeValue] = {U.METER: U.text_value("name", name), U.QUANTITY: value}
    if customer_id is not None:
        attributes[U.CUSTOMER_ID] = U.text_value("customer_id", customer_id)
    if idempotency_key is not None:
        attributes[U.IDEMPOTENCY_KEY] = U.text_value("idempotency_key", idempotency_key)
    attributes.update(meta_attributes(meta))
    _emit(METER_SPAN, attributes)


def _product(product: str | Mapping[str, str]) -> dict[str, AttributeValue]:
    if isinstance(product, str):
        return {U.PRODUCT_FIELDS["id"]: U.text_value("product", product)}
    if not isinstance(product, Mapping):
        raise TypeError(f"product must be a product id or a mapping, got {U.describe_type(product)}")
    unknown = sorted(set(product) - set(U.PRODUCT_FIELDS))
    if unknown:
        raise ValueError(f"product has unknown keys {unknown}; use {', '.join(U.PRODUCT_FIELDS)}")
    return {U.PRODUCT_FIELDS[k]: U.text_value(f"product[{k!r}]", v) for k, v in product.items()}


def _emit(span_name: str, attributes: dict[str, AttributeValue]) -> None:
    span = trace.get_tracer(TRACER_NAME).start_span(span_name, attributes=attributes)
    if not span.is_recording() and not _warned.is_set():
        _warned.set()
        log.warning("spanmeter.sdk: %s not sent: no recording tracer provider (call spanmeter.sdk.configure(), "
                    "or run under opentelemetry-instrument); this warning is shown once", span_name)
    span.end()
