"""Reading a REST ingest body: JSON only, bounded, strict; every refusal a `RestError`.

- Content type `application/json` (any `charset`, or a `+json` type), else 415.
- Size: the receivers' `max_request_bytes`, on the wire and after gzip, else 413.
- Strict JSON, else 400 naming what is wrong: UTF-8 only; no duplicate keys in an object (which
  one a parser keeps differs between parsers, so a body with them has no one meaning); no NaN or
  Infinity; no lone surrogate escapes (text no UTF-8 encoder takes); nesting at most MAX_DEPTH
  deep (a deep body must fail here, not in a recursive walk).
- Numbers with a fraction are read as exact `Decimal`s: a cost of 0.1 stays 0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, Final, NoReturn

from spanmeter.receivers.decode import BadRequest, TooLarge
from spanmeter.receivers.ingest import Refusal
from spanmeter.receivers.otlp_http import read_body

MAX_DEPTH: Final = 32


class RestError(Exception):
    """A refused REST request: its HTTP status and a message naming the field or the problem
    (`problems`: each problem on its own, when there are several)."""

    def __init__(
        self, status: int, message: str, retry_after: float | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.problems = problems or [message]


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(
    content_type: str, headers: dict[bytes, str], chunks: AsyncIterator[bytes], limit: int
) -> Any:
    """The parsed body. `headers`: lower-case header names as bytes to their values."""
    if not is_json(content_type):
        raise RestError(415, f"unsupported content type {content_type or '(none)'!r}; send application/json")
    try:
        raw = await read_body(headers, chunks, limit)
    except TooLarge as error:
        raise RestError(413, str(error)) from None
    except BadRequest as error:
        raise RestError(400, str(error)) from None
    except Refusal as refusal:  # an unsupported content encoding, or the client went away
        raise RestError(415 if refusal.kind == "unsupported_media" else 400, refusal.message) from None
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RestError(400, f"the body is not valid UTF-8 (byte {error.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_float=Decimal, parse_constant=_constant)
    except RecursionError:
        raise RestError(400, f"the JSON body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:  # JSONDecodeError, and the hooks' errors
        raise RestError(400, f"the body is not valid JSON: {error}") from None
    _check_nodes(data)
    return data


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key[:60]!r} appears twice in one object")
            seen.add(key)
    return out


def _constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _check_nodes(data: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH, and strings that are not Unicode text (a lone
    surrogate escape such as "\\ud800" parses, but no UTF-8 encoder takes it), without recursion."""
    level: list[Any] = [data]
    for _ in range(MAX_DEPTH + 1):
        deeper: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    if isinstance(item, (dict, list)):
                        deeper.append(item)
                    elif isinstance(item, str):
                        _check_text(item)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, (dict, list)):
                        deeper.append(item)
                    elif isinstance(item, str):
                        _check_text(item)
            elif isinstance(value, str):
                _check_text(value)
        if not deeper:
            return
        level = deeper
    raise RestError(400, f"the JSON body is nested more than {MAX_DEPTH} levels deep")


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RestError(400, "the body holds a string that is not Unicode text (a lone surrogate escape)") from None
