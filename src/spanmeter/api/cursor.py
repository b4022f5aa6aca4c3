"""Opaque page cursors: base64url of an HMAC tag and the sort key (seq) of the last item.

The tag (keyed with a secret kept in the database) makes a forged or altered cursor a 400, and
the payload binds the cursor to its query (workspace, filters, order), so it cannot silently page
through a different result.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Final

from spanmeter.api.errors import ApiError
from spanmeter.store.queries import RecordQuery

_TAG_BYTES: Final = 16
_MAX_CHARS: Final = 512


def _fingerprint(query: RecordQuery) -> str:
    shape = [query.workspace, query.order, query.equals, query.model, query.from_ns, query.to_ns, query.meta]
    if query.tag is not None:  # appended only when set: cursors of queries without it stay valid
        shape.append(query.tag)
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def encode_cursor(secret: bytes, query: RecordQuery, seq: int) -> str:
    payload = json.dumps({"v": 1, "seq": seq, "q": _fingerprint(query)}, separators=(",", ":")).encode()
    tag = hmac.new(secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(tag + payload).decode().rstrip("=")


def decode_cursor(secret: bytes, query: RecordQuery, cursor: str) -> int:
    """The seq a cursor continues after; ApiError (400) for anything but a cursor of this query."""
    invalid = ApiError("cursor: not a cursor of this API (unknown or altered); start again without `cursor`")
    if len(cursor) > _MAX_CHARS:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]):
        raise invalid
    data = json.loads(payload)  # signed by us: well-formed
    if data.get("q") != _fingerprint(query):
        raise ApiError(
            "cursor: it belongs to a query with other filters or another order; "
            "repeat the same parameters with it, or start again without `cursor`"
        )
    seq = data["seq"]
    assert isinstance(seq, int)
    return seq
