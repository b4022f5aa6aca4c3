"""API keys on either backend: the `api_keys` table (migrations m003, m010 for quotas).

Keys are not on the ingest hot path's writer: they change rarely (the CLI), so each change is
its own short transaction on its own connection; lookups use the read pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from spanmeter.store.queries import ApiKey
from spanmeter.store.sql.connection import Fetch, OwnConnection
from spanmeter.store.sql.dialect import Dialect

_COLUMNS: Final = (
    "id",
    "workspace",
    "name",
    "prefix",
    "key_hash",
    "scopes",
    "state",
    "created_at",
    "updated_at",
    "quota_records",
    "quota_cost_nano",
)
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM api_keys"


def _key(row: tuple[Any, ...]) -> ApiKey:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["scopes"] = tuple(values["scopes"].split(","))
    return ApiKey(**values)


class SQLKeys:
    """API keys: read on the read connections (`fetch`), each change on a new connection of its
    own (`connect`, in autocommit mode; rare); their SQL in `dialect`."""

    def __init__(self, fetch: Fetch, connect: Callable[[], OwnConnection], dialect: Dialect) -> None:
        self._fetch = fetch
        self._write_connection = connect
        self.dialect = dialect

    def create_key(self, key: ApiKey) -> None:
        row = (
            key.id,
            key.workspace,
            key.name,
            key.prefix,
            key.key_hash,
            ",".join(key.scopes),
            key.state,
            key.created_at,
            key.updated_at,
            key.quota_records,
            key.quota_cost_nano,
        )
        conn = self._write_connection()
        try:
            conn.execute(
                f"INSERT INTO api_keys ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", row
            )
        finally:
            conn.close()

    def find_key(self, key_hash: str) -> ApiKey | None:
        rows = self._fetch(f"{_SELECT} WHERE key_hash = ?", [key_hash])
        return _key(rows[0]) if rows else None

    def list_keys(self, workspace: str | None = None) -> list[ApiKey]:
        if workspace is None:
            return [_key(r) for r in self._fetch(f"{_SELECT} ORDER BY workspace, created_at", [])]
        return [
            _key(r) for r in self._fetch(f"{_SELECT} WHERE workspace = ? ORDER BY created_at", [workspace])
        ]

    def set_key_state(self, key_id: str, state: str) -> ApiKey:
        conn = self._write_connection()
        try:
            conn.execute(self.dialect.begin_write)
            try:
                found = conn.execute(f"{_SELECT} WHERE id = ?", [key_id]).fetchone()
                if found is None:
                    raise KeyError(key_id)
                current = _key(found)
                if current.state == "revoked" and state != "revoked":
                    raise ValueError(f"key {key_id} is revoked; revoking is final, create a new key")
                conn.execute(
                    "UPDATE api_keys SET state = ?, updated_at = ? WHERE id = ?",
                    [state, time.time_ns(), key_id],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return _key(conn.execute(f"{_SELECT} WHERE id = ?", [key_id]).fetchone())
        finally:
            conn.close()

    def set_key_quota(self, key_id: str, records: int | None, cost_nano: int | None) -> ApiKey:
        conn = self._write_connection()
        try:
            updated = conn.execute(
                "UPDATE api_keys SET quota_records = ?, quota_cost_nano = ?, updated_at = ? WHERE id = ?",
                [records, cost_nano, time.time_ns(), key_id],
            ).rowcount
            if not updated:
                raise KeyError(key_id)
            return _key(conn.execute(f"{_SELECT} WHERE id = ?", [key_id]).fetchone())
        finally:
            conn.close()
