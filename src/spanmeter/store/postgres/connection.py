"""PostgreSQL connections for the store: a pool, and connections that speak the shared SQL.

`SqliteLike` wraps a psycopg connection (in autocommit mode: transactions are explicit, as on
the SQLite side) so the store's parts run on it as on a sqlite3 connection: their statements,
built for this backend (dialect.py POSTGRES), go with psycopg's parameter markers for SQLite's `?`
and nothing else changed, and integral NUMERIC results (PostgreSQL's SUM of BIGINT) come back as
int.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg.types.numeric import NumericLoader
from psycopg_pool import ConnectionPool

from spanmeter.errors import StorageError
from spanmeter.store.postgres.dialect import psycopg_markers

_DSN_PASSWORD: Final = re.compile(r"(://[^:/@]*:)[^@]*@|(password\s*=\s*)\S+")


class _IntegralNumeric(NumericLoader):
    """SUM over BIGINT is NUMERIC in PostgreSQL: the store's sums are integers (nano-USD, tokens)."""

    def load(self, data: Any) -> Any:
        value = super().load(data)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)
        return value


def configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("numeric", _IntegralNumeric)


def connect(dsn: str, timeout: float) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(timeout)))
    configure(conn)
    return conn


def new_pool(dsn: str, size: int, timeout: float) -> ConnectionPool[psycopg.Connection[Any]]:
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
        configure=configure,
        check=ConnectionPool.check_connection,  # a server restart leaves dead connections behind
        timeout=timeout,
        open=False,
        name="spanmeter",
    )


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return _DSN_PASSWORD.sub(lambda m: f"{m.group(1)}***@" if m.group(1) else f"{m.group(2)}***", dsn)


class SqliteLike:
    """A psycopg connection with the `execute` / `executemany` of a sqlite3 connection, for the
    store's statements built in PostgreSQL's dialect."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if not params:  # sent as it is (and may be several statements: dialect.begin_write)
            return self.conn.execute(sql)
        return self.conn.execute(psycopg_markers(sql), list(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(psycopg_markers(sql), list(rows))

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.conn.close()


def unavailable(error: BaseException, dsn: str, doing: str = "storage write failed") -> StorageError:
    """The StorageError of a lost or refused connection (the client retries after a delay), for
    `doing` (a write, by default; "storage read failed" for the read queries)."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return StorageError(f"{doing}: the database {redacted(dsn)} is unavailable: {detail}", "unavailable")
