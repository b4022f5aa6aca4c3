"""Decoding OTLP request bodies once, for both receivers: protobuf, OTLP/JSON, gzip.

OTLP/JSON differs from protobuf's canonical JSON in two ways that matter here (OTLP
specification, "JSON Protobuf Encoding"): trace and span ids are hex strings, not base64, and
enums are integers. Unknown fields are ignored.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, Final, TypeVar

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import DecodeError, Message

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
CONTENT_TYPES: Final = (PROTOBUF, JSON)
_HEX_ID_FIELDS: Final = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

M = TypeVar("M", bound=Message)
# Python's JSON parser and protobuf's JSON reader recurse once per level (a value nested ~1,000
# levels deep exhausts the interpreter's stack); no OTLP request nests anywhere near that.
TOO_DEEP: Final = "the JSON body is nested too deeply to be an OTLP request"


class BadRequest(ValueError):
    """The body is not a valid OTLP request (→ INVALID_ARGUMENT / 400)."""


class TooLarge(ValueError):
    """The body is over the size limit, before or after decompression (→ 413)."""


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, stopping as soon as the output passes `limit` (gzip bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise BadRequest(f"the body is not valid gzip: {error}") from None
    if len(out) > limit:
        raise TooLarge(f"the decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest("the gzip body is truncated")
    return out


def decode(body: bytes, content_type: str, message: type[M]) -> M:
    if content_type == PROTOBUF:
        request = message()
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeWarning, ValueError) as error:
            raise BadRequest(f"the body is not a valid protobuf {message.DESCRIPTOR.name}: {error}") from None
        return request
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the JSON body must be an object ({message.DESCRIPTOR.name})")
    try:
        return ParseDict(_hex_ids_to_base64(data), message(), ignore_unknown_fields=True)
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    except (ParseError, ValueError, TypeError) as error:
        raise BadRequest(f"the JSON body is not a valid OTLP {message.DESCRIPTOR.name}: {error}") from None


def _hex_ids_to_base64(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _HEX_ID_FIELDS and isinstance(item, str):
                try:
                    item = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError:
                    raise BadRequest(f"{key} must be a hex string, got {item[:40]!r}") from None
            else:
                item = _hex_ids_to_base64(item)
            out[key] = item
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def encode(message: Message, content_type: str) -> bytes:
    if content_type == PROTOBUF:
        return message.SerializeToString()
    return json.dumps(MessageToDict(message)).encode()

