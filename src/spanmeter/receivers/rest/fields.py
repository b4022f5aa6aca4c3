"""What every REST ingest family reads the same way: typed request models, field checks that name
the field, times, domains, metadata, idempotency keys.

Models are strict (a count is a JSON integer, a name a JSON string: nothing is coerced) and ignore
fields they do not know, as the services' own endpoints do. Length and range rules are the OTLP
path's own (`convert/values.py`), called with the REST field's name, so both paths accept and
refuse the same values.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.functional_serializers import PlainSerializer
from pydantic.json_schema import WithJsonSchema

from spanmeter.convert.values import InvalidSpan, as_str
from spanmeter.receivers.rest.body import RestError

MAX_TAGS: Final = 64
MAX_KEY_CHARS: Final = 512  # idempotency keys
_INT64_MAX: Final = 2**63 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A request model: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _number(value: Any) -> Decimal:
    # JSON numbers arrive as int or (with a fraction or exponent) Decimal: body.parse_json.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError("Input should be a number")  # noqa: TRY004 -- pydantic reports ValueErrors
    return Decimal(value)


# An exact JSON number (integer or decimal), validated by the caller's range rule.
Number = Annotated[
    Decimal,
    BeforeValidator(_number),
    PlainSerializer(str),
    WithJsonSchema({"type": "number"}),
]
# Key-value metadata; its values are checked by `metadata` (the message names the entry).
Metadata = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}),
]


def validated(model: type[M], data: Any, where: str = "") -> M:
    """`data` as `model`, or a 400 naming each wrong field (prefixed with `where`, e.g. `events[3]`)."""
    if not isinstance(data, dict):
        raise RestError(400, f"{where or 'the body'}: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = describe(error, where)
        raise RestError(400, "; ".join(problems), problems=problems) from None


def describe(error: ValidationError, where: str = "") -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"])
        name = f"{where}.{path}" if where and path else where or path
        message = item["msg"].removeprefix("Value error, ")  # a model check's message names its fields
        problems.append(f"{name}: {message}" if name else message)
    return problems


def text(name: str, value: str | None, limit: int) -> str | None:
    """A string field within the configured length; empty is absent."""
    return None if value is None else as_str(name, value, limit) or None


def required(name: str, value: str, limit: int) -> str:
    found = text(name, value, limit)
    if found is None:
        raise InvalidSpan(f"{name} must not be empty")
    return found


def timestamp(name: str, value: str | None) -> int | None:
    """An ISO-8601 time (UTC when it names no offset) as ns since the epoch."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidSpan(f"{name} must be an ISO-8601 time such as 2026-11-23T12:00:00Z; got {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ns = (when - _EPOCH) // (datetime.resolution) * 1000  # exact: no float on the way
    if not 0 < ns <= _INT64_MAX:
        raise InvalidSpan(f"{name} must be between 1970 and 2262; got {value[:40]!r}")
    return ns


def account_domain(name: str, value: str | None, limit: int) -> str | None:
    """A company's domain as accounts are matched on: lower case, no scheme, path, port or `www.`,
    international names in punycode (`Bücher.de` → `xn--bcher-kva.de`)."""
    found = text(name, value, limit)
    if found is None:
        return None
    domain = found.strip().lower()
    domain = domain.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].rstrip(".")
    domain = domain.removeprefix("www.")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidSpan(f"{name} must be a domain name such as company.com; got {found[:60]!r}")
    return domain


def metadata(name: str, values: dict[str, Any] | None, limit: int, max_keys: int) -> dict[str, str]:
    """Key-value metadata as the record's `meta` (filterable with `meta[key]=value`): strings as
    they are, numbers and booleans as their JSON text; at most `max_keys` entries."""
    if not values:
        return {}
    if len(values) > max_keys:
        raise InvalidSpan(f"{name} has {len(values)} entries; the limit is {max_keys} (processors::usage::max_meta_keys)")
    meta = {}
    for key, value in values.items():
        if not key:
            raise InvalidSpan(f"{name} keys must not be empty")
        as_str(f"{name} key", key, limit)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, Decimal):
            value = str(value)  # as sent: 1.50 stays 1.50
        meta[key] = as_str(f"{name}.{key}", value, limit)
    return meta


def tags(name: str, values: list[str] | None, limit: int) -> list[str]:
    if not values:
        return []
    if len(values) > MAX_TAGS:
        raise InvalidSpan(f"{name} has {len(values)} entries; the limit is {MAX_TAGS}")
    return [as_str(f"{name}[{i}]", tag, limit) for i, tag in enumerate(values)]


def idempotency_key(name: str, value: str | None) -> str | None:
    return text(name, value, MAX_KEY_CHARS)


def fresh_key(family: str) -> str:
    """The key of a record whose request names none: every such request is a new record."""
    return f"{family}:{uuid.uuid4().hex}"
