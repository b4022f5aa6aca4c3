"""The `usage.*` span attributes an application sends, and the rules their values must follow.

One module for both sides: the collector's converter reads spans with these names and rejects the
values these rules refuse, and `spanmeter.sdk` writes the same names and checks the same rules in
the application, so a value the SDK accepts is never rejected by the collector for these reasons.
Pure Python (standard library only): the SDK imports it without the collector's server parts.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

# --- who and what: stamped from the usage context, or set on a span by the app --------------
CUSTOMER_ID: Final = "usage.customer.id"
USER_ID: Final = "usage.user.id"
USER_EMAIL: Final = "usage.user.email"
ACCOUNT_DOMAIN: Final = "usage.account.domain"
CONVERSATION_ID: Final = "usage.conversation.id"
MESSAGE_ID: Final = "usage.message.id"
FEATURE: Final = "usage.feature"
TAGS: Final = "usage.tags"
META_PREFIX: Final = "usage.meta."

# --- product events and meters ------------------------------------------------------------
EVENT_NAME: Final = "usage.event.name"
EVENT_FAMILY: Final = "usage.event.family"
SOURCE: Final = "usage.source"
CAMPAIGN_ID: Final = "usage.campaign.id"
IDEMPOTENCY_KEY: Final = "usage.idempotency_key"
METER: Final = "usage.meter"
QUANTITY: Final = "usage.quantity"
PRODUCT_FIELDS: Final = {f: f"usage.product.{f}" for f in ("id", "name", "type", "version", "category")}

EVENT_FAMILIES: Final = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")

# A quadrillion units in one meter event is a bug upstream.
MAX_QUANTITY: Final = Decimal(10**15)
QUANTITY_PLACES: Final = 18  # digits after the decimal point, at most: 1e-999999999 is no quantity
# The collector's default `processors::usage::max_field_chars`: longest id, name or meta value.
MAX_FIELD_CHARS: Final = 4096


def event_family(name: str, value: str, error: type[ValueError] = ValueError) -> str:
    """`value` lower-cased if it is one of EVENT_FAMILIES; else `error` naming `name`."""
    family = value.lower()
    if family not in EVENT_FAMILIES:
        raise error(f"{name} must be one of {', '.join(EVENT_FAMILIES)}; got {value[:40]!r}")
    return family


def decimal_value(
    name: str, value: Any, *, limit: Decimal, positive: bool, error: type[ValueError] = ValueError
) -> Decimal:
    """`value` (int, float or numeric string) as an exact Decimal within (0 or >= 0, `limit`]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise error(f"{name} must be a number, got {describe_type(value)}")
    try:
        # repr() of a float is its shortest round-trip form: 0.1 stays 0.1, not 0.1000000000000000055.
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise error(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise error(f"{name} must be a finite number, got {value!r}")
    if (number <= 0) if positive else (number < 0):
        raise error(f"{name} must be {'> 0' if positive else '>= 0'}, got {number}")
    if number > limit:
        raise error(f"{name} is {number}, above the limit of {limit}")
    return number


def meter_quantity(name: str, value: Any, error: type[ValueError] = ValueError) -> Decimal:
    """A meter's quantity: a finite number > 0, at most MAX_QUANTITY, with at most QUANTITY_PLACES
    digits after the decimal point."""
    quantity = decimal_value(name, value, limit=MAX_QUANTITY, positive=True, error=error)
    if _places(quantity) > QUANTITY_PLACES:
        raise error(f"{name} has more than {QUANTITY_PLACES} digits after the decimal point: {str(value)[:60]!r}")
    return quantity


def _places(number: Decimal) -> int:
    """Digits after the decimal point, trailing zeros left out (normalize() would underflow)."""
    _sign, digits, exponent = number.as_tuple()
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return -(int(exponent) + zeros)


def text_value(name: str, value: Any, max_chars: int = MAX_FIELD_CHARS) -> str:
    """A non-empty string of at most `max_chars` characters (ids, names, meta values)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {describe_type(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value)} characters long; the limit is {max_chars}")
    return value


def describe_type(value: Any) -> str:
    """What a wrong value is, for an error message (a string shows its start)."""
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a key-value list"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, float):
        return f"{value!r}"
    return type(value).__name__
