"""Reading typed values out of OTLP attributes, with the errors that reject a span.

`extract` reads a span's (or resource's, or event's) attributes in one pass into `Facts`: for each
fact of FACTS, the first attribute name present and its value. A value of the wrong type or range
is never coerced into a count: the span is rejected with a message naming the attribute, so the
sender learns about it through OTLP partial success.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from spanmeter.convert.attributes import FACT_INDEX, META_PREFIX
from spanmeter.usage_schema import decimal_value
from spanmeter.usage_schema import describe_type as _type_name

# A trillion tokens in one call is a bug upstream.
MAX_TOKENS: Final = 10**12
MAX_COST_USD: Final = Decimal(10**9)
# Times are stored as signed 64-bit nanoseconds: OTLP's fixed64 goes past them (year 2262).
MAX_TIME_NS: Final = 2**63 - 1
META: Final = "meta"  # the Facts key under which `usage.meta.<key>` attributes are gathered

_SCALARS: Final = frozenset({"string_value", "int_value", "double_value", "bool_value", "bytes_value"})

# fact → (rank of the attribute name, attribute name, value); the lowest rank wins.
Facts = dict[str, tuple[int, str, Any]]


class InvalidSpan(ValueError):
    """The span (or span event / log record) cannot become a valid usage record."""


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Every attribute, decoded (for content capture; conversion itself uses `extract`)."""
    return {kv.key: any_value(kv.value) for kv in kvs}


# Attribute name → its one (fact, rank): all names but one; the rest → all their (fact, rank).
_ONE_FACT: Final = {name: entries[0] for name, entries in FACT_INDEX.items() if len(entries) == 1}
_MORE_FACTS: Final = {name: entries for name, entries in FACT_INDEX.items() if len(entries) > 1}


def extract(kvs: Iterable[KeyValue], extra: dict[str, Any] | None = None) -> Facts:
    facts: Facts = {}
    meta: dict[str, Any] | None = None
    one_fact = _ONE_FACT.get
    for kv in kvs:
        key = kv.key
        entry = one_fact(key)
        if entry is None:
            entries = _MORE_FACTS.get(key)
            if entries is None:
                if key.startswith(META_PREFIX) and len(key) > len(META_PREFIX):
                    value = any_value(kv.value)
                    if value is not None:
                        if meta is None:
                            meta = {}
                        meta[key[len(META_PREFIX) :]] = value
                continue
        else:
            entries = (entry,)
        any_ = kv.value
        which = any_.WhichOneof("value")
        if which is None:
            continue
        # scalars inline (the hot path), arrays and maps through any_value
        value = getattr(any_, which) if which in _SCALARS else any_value(any_)
        for fact, rank in entries:
            held = facts.get(fact)
            if held is None or rank < held[0]:  # the first of equal names wins
                facts[fact] = (rank, key, value)
    if meta is not None:
        facts[META] = (0, META_PREFIX, meta)
    for fact, value in (extra or {}).items():
        facts[fact] = (-1, fact, value)
    return facts


# Resources read lately, by their encoding. An app's SDK sends the same resource in every request,
# and reading its attributes costs ~14 µs (upb makes an object of every key and value) against
# ~1.5 µs to encode it: a 1-span request's conversion is ~70 µs. Bounded in entries and size.
_RESOURCES: Final[dict[bytes, Facts]] = {}
RESOURCES_REMEMBERED: Final = 1024
RESOURCE_BYTES_REMEMBERED: Final = 4096  # larger resources are read every time


def resource_facts(resource: Resource, encoded: bytes | None = None) -> Facts:
    """`extract` of a resource's attributes; the same dict for the same encoded resource, so
    callers must not change it. `encoded`: the resource's encoding, when the caller has it."""
    if encoded is None:
        encoded = resource.SerializeToString()
    facts = _RESOURCES.get(encoded)
    if facts is None:
        facts = extract(resource.attributes)
        if len(encoded) <= RESOURCE_BYTES_REMEMBERED:
            if len(_RESOURCES) >= RESOURCES_REMEMBERED:
                _RESOURCES.clear()  # many distinct resources: start over rather than track use
            _RESOURCES[encoded] = facts
    return facts


def lookup(layers: Sequence[Facts], fact: str) -> tuple[str, Any] | None:
    """The fact's attribute name and value from the first layer that has it (span before resource)."""
    for facts in layers:
        held = facts.get(fact)
        if held is not None:
            return held[1], held[2]
    return None


def as_str(name: str, value: Any, max_chars: int) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        text = str(value)
    else:
        raise InvalidSpan(f"{name} must be a string, got {_type_name(value)}")
    if len(text) > max_chars:
        raise InvalidSpan(f"{name} is {len(text)} characters long; the limit is {max_chars}")
    return text


def get_str(layers: Sequence[Facts], fact: str, max_chars: int) -> str | None:
    for facts in layers:
        held = facts.get(fact)
        if held is not None:
            value = held[2]
            if type(value) is str and len(value) <= max_chars:  # the common case, checked inline
                return value or None
            return as_str(held[1], value, max_chars) or None
    return None


def as_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSpan(f"{name} must be a non-negative integer, got {_type_name(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidSpan(f"{name} must be a non-negative integer, got {value!r}")
        value = int(value)
    if value < 0:
        raise InvalidSpan(f"{name} must be a non-negative integer, got {value}")
    if value > MAX_TOKENS:
        raise InvalidSpan(f"{name} is {value}, above the limit of {MAX_TOKENS}")
    return int(value)


def get_count(facts: Facts, fact: str) -> int | None:
    held = facts.get(fact)
    if held is None:
        return None
    value = held[2]
    if type(value) is int and 0 <= value <= MAX_TOKENS:  # the common case, checked inline
        return value
    return as_count(held[1], value)


def as_decimal(name: str, value: Any, *, limit: Decimal, positive: bool) -> Decimal:
    return decimal_value(name, value, limit=limit, positive=positive, error=InvalidSpan)


def check_time(name: str, value: int) -> int:
    """A time the store can hold: a present OTLP time (fixed64 ns) below 2^63."""
    if value > MAX_TIME_NS:
        raise InvalidSpan(f"{name} is {value}, past the latest time stored ({MAX_TIME_NS} ns, year 2262)")
    return value


def as_str_list(name: str, value: Any, max_chars: int) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [as_str(name, item, max_chars) for item in items]


def hex_id(raw: bytes, size: int, name: str) -> str:
    if len(raw) != size or not any(raw):
        raise InvalidSpan(f"{name} must be {size} non-zero bytes, got {len(raw)} bytes")
    return raw.hex()
