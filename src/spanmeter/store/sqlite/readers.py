"""The read side's connections: a small pool of read-only ones (WAL lets them run beside the writer)."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

_POOL_SIZE: Final = 4
# Per read connection. A page with a rare filter walks ~8,000 rows (~8 MB of pages); SQLite's
# default 2 MB cache re-read them from the OS on every call: 5.7 -> 4.4 ms of SQL at 1M records.
_READ_CACHE_KIB: Final = 16 * 1024


class Readers:
    """Up to `size` read connections, opened on demand, all closed by `close` (and opened again
    on demand after it)."""

    def __init__(self, path: Path, timeout: float, size: int = _POOL_SIZE) -> None:
        self._path = path
        self._timeout = timeout
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._size = size

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._lock:
                pooled = conn in self._all
            if pooled:
                self._idle.put(conn)
            else:
                conn.close()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self._path), timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=ON")
        conn.execute(f"PRAGMA cache_size=-{_READ_CACHE_KIB}")
        with self._lock:
            if len(self._all) < self._size:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            self._idle = queue.SimpleQueue()
        for conn in conns:
            conn.close()


    def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()
