"""API keys: minting, hashing, and turning request headers into a principal.

A key is `sm_` + 32 random bytes (base64url). Only its SHA-256 is stored: with that much entropy
a plain hash cannot be brute-forced, and a lookup by hash stays an index probe. The stored and
computed hashes are still compared with `hmac.compare_digest`.

The same `Authenticator` serves HTTP (Authorization: Bearer / x-api-key headers) and gRPC
(the same names as metadata). Failures carry fixed messages clients can match on: `Missing API key`,
`Invalid API key`, `Revoked API key`, `Inactive API key`.
Transport-neutral: the HTTP middleware is `api/auth_http.py`, the gRPC interceptor
`receivers/grpc_auth.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from spanmeter.money import to_nano
from spanmeter.store.port import KeyStore
from spanmeter.store.queries import SCOPES, ApiKey

KEY_PREFIX: Final = "sm_"
_SHOWN_CHARS: Final = 10

MISSING: Final = "Missing API key"
INVALID: Final = "Invalid API key"
REVOKED: Final = "Revoked API key"
INACTIVE: Final = "Inactive API key"

# The workspace of the request being handled, set by the HTTP middleware and the gRPC
# interceptor; ingest paths read it through `request_workspace`.
_CURRENT_WORKSPACE: ContextVar[str | None] = ContextVar("spanmeter_workspace", default=None)


@dataclass(slots=True, frozen=True)
class Principal:
    workspace: str
    scopes: frozenset[str]
    key_id: str | None = None  # None: auth is off, or an anonymous caller of a public endpoint
    quota_records: int | None = None  # the key's monthly quota (store/queries.py ApiKey)
    quota_cost_nano: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class AuthError(Exception):
    """401 (no usable key) or 403 (a valid key without the needed scope)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(workspace: str, name: str, scopes: tuple[str, ...]) -> tuple[str, ApiKey]:
    """A fresh key (shown once) and its record to store."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    if not workspace:
        raise ValueError("workspace must not be empty")
    key = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    now = time.time_ns()
    record = ApiKey(
        id="key_" + secrets.token_hex(6),
        workspace=workspace,
        name=name,
        prefix=key[:_SHOWN_CHARS],
        key_hash=hash_key(key),
        scopes=tuple(dict.fromkeys(scopes)),
        state="active",
        created_at=now,
        updated_at=now,
    )
    return key, record


_QUOTA: Final = re.compile(
    r"^\s*(?:(?P<records>\d+)(?:\s*records?)?|\$\s*(?P<usd1>\d+(?:\.\d+)?)|(?P<usd2>\d+(?:\.\d+)?)\s*usd)\s*$",
    re.IGNORECASE,
)
QUOTA_HELP: Final = "a record count per month (e.g. 10000) or a cost per month in USD (e.g. 25usd or $25)"


def parse_quota(text: str) -> tuple[str, int]:
    """("records", count) or ("cost_nano", nano-USD) of a `--quota` value; ValueError otherwise."""
    match = _QUOTA.match(text)
    if match is None:
        raise ValueError(f"quota {text!r}: expected {QUOTA_HELP}")
    if match["records"] is not None:
        return "records", int(match["records"])
    return "cost_nano", to_nano(Decimal(match["usd1"] or match["usd2"]))


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `x-api-key`, else None."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


class Authenticator:
    def __init__(self, keys: KeyStore, *, enabled: bool, default_workspace: str) -> None:
        self.keys = keys
        self.enabled = enabled
        self.default_workspace = default_workspace
        self._open = Principal(default_workspace, frozenset(SCOPES))

    def authenticate(self, key: str | None, scope: str) -> Principal:
        """The caller of a protected operation needing `scope`; raises AuthError."""
        if not self.enabled:
            return self._open
        if key is None:
            raise AuthError(MISSING)
        principal = self._lookup(key)
        if not principal.allows(scope):
            raise AuthError(f"API key lacks the {scope!r} scope", 403)
        return principal

    def optional(self, key: str | None, public_workspace: str | None) -> Principal:
        """The caller of a public endpoint: a presented read key scopes it to that workspace;
        anyone else reads `public_workspace`."""
        if not self.enabled:
            return self._open
        if key is not None:
            try:
                principal = self._lookup(key)
            except AuthError:
                principal = None
            if principal is not None and principal.allows("read"):
                return principal
        return Principal(public_workspace or self.default_workspace, frozenset())

    def _lookup(self, key: str) -> Principal:
        computed = hash_key(key)
        found = self.keys.find_key(computed)
        if found is None or not hmac.compare_digest(found.key_hash, computed):
            raise AuthError(INVALID)
        if found.state == "revoked":
            raise AuthError(REVOKED)
        if found.state != "active":
            raise AuthError(INACTIVE)
        return Principal(
            found.workspace, frozenset(found.scopes), found.id, found.quota_records, found.quota_cost_nano
        )


def bind_request_workspace(workspace: str | None) -> Token[str | None]:
    """Bind the workspace of the request being handled (None: the configured one); the caller
    resets the token when the request is done. A token, not a context manager: ~0.7 µs against
    ~3.7 µs for a generator-based one, on every request."""
    return _CURRENT_WORKSPACE.set(workspace)


def reset_request_workspace(token: Token[str | None]) -> None:
    _CURRENT_WORKSPACE.reset(token)


def request_workspace(default: str) -> str:
    """The workspace records of the current request belong to: the key's, when auth is on."""
    return _CURRENT_WORKSPACE.get() or default
