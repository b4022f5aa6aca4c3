"""Copying the WAL into the database off the writer's path, and keeping the WAL file bounded.

SQLite's automatic checkpoint runs inside the commit that crosses the threshold and stalls the
writer; here a PASSIVE checkpoint runs beside it (it never blocks writes), every
CHECKPOINT_SECONDS when records were committed. Its thread runs at a lower CPU priority: a
checkpoint copies every page the batches touched (the key index's pages are random), a CPU burst
that otherwise delays the requests in flight (p99 at half load, bench/README.md); at low priority
it uses the idle time between them. If it falls behind and the WAL file passes WAL_LIMIT_PAGES,
the writer truncates it (at normal priority).

Under steady writes the WAL never starts over by itself: SQLite rewinds it only at the start of a
transaction after a checkpoint that copied every frame, and new frames arrive while this thread
copies. So past WAL_RESTART_PAGES the writer copies the few frames left itself, between two
transactions, and its next one rewinds the WAL (without this it grew to the limit every ~5 s at
12k spans/s, and each truncation stalled writes 0.13 s). A PASSIVE checkpoint that does not copy
the whole WAL leaves the database file unsynced; this thread syncs it after each one, so that the
rewind's own sync (on the writer's path) is not seconds of copied pages: measured with strace,
20-24 ms down to a few.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Final

from spanmeter.priority import lower_this_thread
from spanmeter.store.sqlite.connection import connect

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS: Final = 0.5  # how often the checkpoint thread looks for new commits
WAL_RESTART_PAGES: Final = 16_384  # 64 MiB of 4 KiB pages: the writer lets the WAL start over
WAL_LIMIT_PAGES: Final = 65_536  # 256 MiB: the writer truncates it


class Checkpoints:
    """The checkpoint thread, and what the writer does about the WAL between two transactions."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._since = 0  # records committed since the last checkpoint (the writer adds)
        self._rewind_due = False  # the WAL passed WAL_RESTART_PAGES: the writer finishes a checkpoint
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page_size = 4096
        self._next_truncation = 0.0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="spanmeter-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint that truncates the WAL (blocking)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def configure(self, conn: sqlite3.Connection) -> None:
        """Set up the writer's connection: no automatic checkpoints, a rewound WAL cut back."""
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # A rewound WAL file is cut back to this size, so its size tells how far the log has grown.
        conn.execute(f"PRAGMA journal_size_limit={WAL_RESTART_PAGES * self._page_size}")

    def committed(self, records: int) -> None:
        with self._lock:
            self._since += records

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """On the writer's thread, between two transactions: rewind or truncate the WAL when due."""
        if self._rewind_due:
            self._rewind_due = False
            _finish_checkpoint(conn)
        if time.monotonic() >= self._next_truncation:
            with contextlib.suppress(OSError):
                wal_bytes = Path(f"{self.path}-wal").stat().st_size
                if wal_bytes > WAL_LIMIT_PAGES * self._page_size and not _truncate_wal(conn):
                    self._next_truncation = time.monotonic() + CHECKPOINT_SECONDS  # a checkpoint runs: later

    def _run(self) -> None:
        lower_this_thread("checkpoint")
        conn = connect(self.path, timeout=self.busy_timeout)
        database_fd = os.open(self.path, os.O_RDONLY)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                with self._lock:
                    since, self._since = self._since, 0
                if not since:
                    continue  # nothing new to copy
                again = False
                try:
                    _busy, wal_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if done:  # flush the copied pages now, so the writer's rewind finds little to sync
                        os.fdatasync(database_fd)
                    if wal_pages > WAL_RESTART_PAGES:
                        self._rewind_due = True
                    else:
                        again = done < wal_pages  # readers kept some frames
                except (sqlite3.Error, OSError) as error:
                    log.warning("SQLite checkpoint failed (will retry): %s", error)
                    again = True
                if again:
                    self.committed(since)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            log.warning("final SQLite checkpoint failed: %s", error)
        finally:
            os.close(database_fd)
            conn.close()


def _finish_checkpoint(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as error:
        log.warning("SQLite checkpoint failed (will retry): %s", error)


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Copy the whole WAL and cut it to zero; False when a running checkpoint holds it (later)."""
    started = time.monotonic()
    try:
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as error:
        log.warning("SQLite WAL truncation failed (will retry): %s", error)
        return False
    if busy:
        return False
    log.info("the WAL passed %d pages: copied and truncated it in %.2f s", WAL_LIMIT_PAGES, time.monotonic() - started)
    return True
