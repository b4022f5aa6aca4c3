"""The outbox on either backend (store/outbox.py, store/port.py): exporter positions and delivery exceptions.

Tables (migrations m008, m013, m017): `exporter_positions`, one row per exporter (with its running
totals of delivered records and retried attempts), `deliveries`, only the dead ones and those
sent again, and `exporter_skips`, the records each exporter left out unsent, per reason (counted
in the transaction that moves the exporter past them: once each, whatever the crashes). Each change is a few small statements that the store's writer
runs inside its next transaction (`Writer.transaction`), so exporters never compete with
ingest for the store's write lock. Reading a batch runs on the outbox's own connection in a read
transaction (a consistent snapshot, no lock), and scans at most SCAN_WINDOW records past the
position, however selective the filter. Each backend supplies that connection and tells its
errors apart (store/sqlite/outbox.py, store/postgres/outbox.py).

Every change is made only by the process holding the exporter's lease (two `spanmeter serve` on
one database do not send the same records twice); a lost lease raises LeaseLost.
"""

from __future__ import annotations

import abc
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from spanmeter.errors import StorageError
from spanmeter.store.outbox import (
    Claim,
    Delivery,
    ExporterState,
    ExportFilter,
    ItemOf,
    LeaseLost,
    NotDue,
    Requeued,
    Skipped,
    StartAt,
    holder_is_gone,
)
from spanmeter.store.schema import COLUMNS, row_to_record
from spanmeter.store.sql.connection import Connection, OwnConnection
from spanmeter.store.sql.dialect import Dialect
from spanmeter.store.sql.items import complete_items


def schema(d: Dialect) -> tuple[str, ...]:
    i, t = d.integer, d.text
    return (
        (
            f"CREATE TABLE exporter_positions (exporter {t} PRIMARY KEY, position {i} NOT NULL,"
            f" claim_end {i}, attempts {i} NOT NULL DEFAULT 0, failing_since {i},"
            f" next_attempt_at {i} NOT NULL DEFAULT 0, last_error {t}, lease_owner {t}, lease_until {i},"
            f" updated_at {i} NOT NULL)"
        ),
        (
            f"CREATE TABLE deliveries (exporter {t} NOT NULL, seq {i} NOT NULL, state {t} NOT NULL,"
            f" attempts {i} NOT NULL, reason {t}, updated_at {i} NOT NULL,"
            f" PRIMARY KEY (exporter, seq)){d.table_options}"
        ),
        "CREATE INDEX deliveries_state ON deliveries (state, exporter, seq)",
    )


def counts_schema(d: Dialect) -> tuple[str, ...]:
    """m013: what `spanmeter exporters status` totals, kept with the position."""
    return (
        f"ALTER TABLE exporter_positions ADD COLUMN delivered {d.integer} NOT NULL DEFAULT 0",
        f"ALTER TABLE exporter_positions ADD COLUMN retried {d.integer} NOT NULL DEFAULT 0",
    )


def skips_schema(d: Dialect) -> tuple[str, ...]:
    """m017: records left out unsent (e.g. no Fluxrate meter token), per reason."""
    return (
        (
            f"CREATE TABLE exporter_skips (exporter {d.text} NOT NULL, reason {d.text} NOT NULL,"
            f" count {d.integer} NOT NULL, detail {d.text} NOT NULL, updated_at {d.integer} NOT NULL,"
            f" PRIMARY KEY (exporter, reason)){d.table_options}"
        ),
    )


SCAN_WINDOW: Final = 20_000  # records past the position one claim reads at most
_RECORD: Final = f"SELECT seq, {', '.join(COLUMNS)} FROM records"
_STATE: Final = (
    "SELECT position, claim_end, attempts, failing_since, next_attempt_at, lease_owner, lease_until"
    " FROM exporter_positions WHERE exporter = ?"
)
_BACKOFF_RESET: Final = "attempts = 0, failing_since = NULL, next_attempt_at = 0"
_REGISTER: Final = (
    "INSERT INTO exporter_positions (exporter, position, updated_at)"
    " VALUES (?, CASE WHEN ? THEN 0 ELSE (SELECT COALESCE(MAX(seq), 0) FROM records) END, ?) ON CONFLICT DO NOTHING"
)
_MOVE_ON: Final = (  # past a delivered or dead batch, or records the filter skips
    f"UPDATE exporter_positions SET position = ?, claim_end = NULL, {_BACKOFF_RESET}, last_error = ?,"
    " updated_at = ? WHERE exporter = ?"
)
_ADVANCE: Final = (  # past the settled head of a batch; the rest of it stays claimed
    f"UPDATE exporter_positions SET position = ?, {_BACKOFF_RESET}, last_error = NULL, updated_at = ? WHERE exporter = ?"
)
_RENEW: Final = "UPDATE exporter_positions SET lease_until = ? WHERE exporter = ?"
_COUNT_DELIVERED: Final = "UPDATE exporter_positions SET delivered = delivered + ? WHERE exporter = ?"
_COUNT_SKIPPED: Final = (
    "INSERT INTO exporter_skips (exporter, reason, count, detail, updated_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (exporter, reason) DO UPDATE SET count = exporter_skips.count + excluded.count,"
    " detail = excluded.detail, updated_at = excluded.updated_at"
)
_KEEP_BATCH: Final = "UPDATE exporter_positions SET claim_end = ?, updated_at = ? WHERE exporter = ?"
_FAILED: Final = (
    "UPDATE exporter_positions SET attempts = attempts + 1, retried = retried + 1,"
    " failing_since = CASE WHEN ? THEN COALESCE(failing_since, ?) END,"
    " next_attempt_at = ?, last_error = ?, updated_at = ? WHERE exporter = ?"
)
_RESET_REQUEUED: Final = (
    f"UPDATE exporter_positions SET {_BACKOFF_RESET}, last_error = ?, updated_at = ? WHERE exporter = ?"
)
_DEAD: Final = (
    "INSERT INTO deliveries (exporter, seq, state, attempts, reason, updated_at) VALUES (?, ?, 'dead', ?, ?, ?)"
    " ON CONFLICT (exporter, seq) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,"
    " reason = excluded.reason, updated_at = excluded.updated_at"
)
_DELETE_DELIVERY: Final = "DELETE FROM deliveries WHERE exporter = ? AND seq = ?"
_MARK_DEAD: Final = (
    "UPDATE deliveries SET state = 'dead', attempts = attempts + ?, reason = ?, updated_at = ?"
    " WHERE exporter = ? AND seq = ?"
)
_RELEASE: Final = (
    "UPDATE exporter_positions SET lease_owner = NULL, lease_until = NULL WHERE exporter = ? AND lease_owner = ?"
)


def _counted(exporter: str, settled: int, skipped: Sequence[Skipped], now_ns: int) -> list[tuple[str, list[Any]]]:
    """The totals of `settled` records moved past: each delivered, but the skipped ones (per reason)."""
    left_out = sum(s.count for s in skipped)
    return [
        (_COUNT_DELIVERED, [max(settled - left_out, 0), exporter]),
        *((_COUNT_SKIPPED, [exporter, s.reason, s.count, s.detail, now_ns]) for s in skipped if s.count),
    ]


def _check_lease(conn: Connection, exporter: str, owner: str) -> None:
    held = conn.execute("SELECT lease_owner FROM exporter_positions WHERE exporter = ?", [exporter]).fetchone()
    if held is None or held[0] != owner:
        raise LeaseLost(f"exporter {exporter}: its lease passed to {held[0] if held else 'nobody'}")


def _take_lease(
    conn: Connection, exporter: str, owner: str, now_ns: int, lease_ns: int
) -> tuple[int, int | None, int, int | None, int] | NotDue:
    """The exporter's state, after taking or renewing its lease; NotDue while another holds it."""
    state = conn.execute(_STATE, [exporter]).fetchone()
    if state is None:
        raise KeyError(f"exporter {exporter} is not registered")
    position, claim_end, attempts, failing_since, next_attempt_at, lease_owner, lease_until = state
    if lease_owner not in (None, owner) and lease_until > now_ns and not holder_is_gone(lease_owner):
        return NotDue(lease_until, held_by=lease_owner)
    conn.execute(
        "UPDATE exporter_positions SET lease_owner = ?, lease_until = ? WHERE exporter = ?",
        [owner, now_ns + lease_ns, exporter],
    )
    return position, claim_end, attempts, failing_since, next_attempt_at


def _filter_sql(where: ExportFilter) -> tuple[str, list[Any]]:
    clauses, params = [], []  # type: list[str], list[Any]
    for column, values in (
        ("workspace", where.workspaces),
        ("kind", where.kinds),
        ("type", where.types),
        ("customer_id", where.customers),
    ):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    return "".join(f" AND {c}" for c in clauses), params


class SQLOutbox(abc.ABC):
    """Exporter positions and claims: reads on a connection of the backend's (`_outbox`), writes
    by the writer (`transaction`); their SQL in `dialect`."""

    def __init__(self, transaction: Callable[[Callable[[Connection], Any]], Any], dialect: Dialect) -> None:
        self.transaction = transaction  # the writer's: runs a function in its next transaction
        self.dialect = dialect
        self._item = f"SELECT seq, {dialect.item_json} FROM records"
        self._conn: OwnConnection | None = None
        self._lock = threading.Lock()

    def _outbox(self) -> tuple[Connection, threading.Lock]:
        """The outbox's read connection (opened on first use, again after it broke) and the lock
        its users take."""
        if self._conn is None or not self._usable(self._conn):
            self._conn = self._connect()
        return self._conn, self._lock

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @abc.abstractmethod
    def _connect(self) -> OwnConnection:
        """A new read connection to the backend's database."""

    def _usable(self, conn: OwnConnection) -> bool:
        """Whether `conn` can still be used (a backend whose connections break says when)."""
        return True

    @abc.abstractmethod
    def _storage_error(self, error: Exception) -> StorageError | None:
        """`error` as a backend-neutral StorageError if it is the backend's, else None."""

    def _write(self, steps: list[tuple[str, list[Any]]], owner: str | None = None, exporter: str = "") -> None:
        """Run the statements in one write transaction (the writer's: SQLiteStore.transaction);
        with `owner`, only while it holds the exporter's lease."""

        def apply(conn: Connection) -> None:
            if owner is not None:
                _check_lease(conn, exporter, owner)
            for sql, params in steps:
                conn.execute(sql, params)

        self.transaction(apply)

    # --- exporters ---------------------------------------------------------------------------
    def register_exporter(self, exporter: str, start_at: StartAt) -> int:
        self._write([(_REGISTER, [exporter, start_at == "beginning", time.time_ns()])])
        conn, lock = self._outbox()
        with lock:
            position: int = conn.execute(
                "SELECT position FROM exporter_positions WHERE exporter = ?", [exporter]
            ).fetchone()[0]
        return position

    def claim(
        self,
        exporter: str,
        where: ExportFilter,
        limit: int,
        owner: str,
        now_ns: int,
        lease_ns: int,
        item_of: ItemOf | None = None,
    ) -> Claim | NotDue | None:
        # 1. the lease and the backoff (a short write)
        state = self.transaction(lambda conn: _take_lease(conn, exporter, owner, now_ns, lease_ns))
        if isinstance(state, NotDue):
            return state
        position, claim_end, attempts, failing_since, next_attempt_at = state
        if next_attempt_at > now_ns:
            return NotDue(next_attempt_at)
        conn, lock = self._outbox()  # reads: this module's own connection, no lock on the writer
        with lock:
            # 2. the batch (a read snapshot: the records and MAX(seq) agree)
            select = _RECORD if item_of is None else self._item
            conn.execute(self.dialect.begin_read)
            try:
                requeued = [
                    seq
                    for (seq,) in conn.execute(
                        "SELECT seq FROM deliveries WHERE exporter = ? AND state = 'pending' ORDER BY seq LIMIT ?",
                        [exporter, limit],
                    )
                ]
                if requeued:
                    rows = conn.execute(
                        f"{select} WHERE seq IN ({', '.join('?' * len(requeued))}) ORDER BY seq", requeued
                    ).fetchall()
                    end = position
                else:
                    filter_sql, params = _filter_sql(where)
                    if claim_end is not None:  # the batch in hand: the same records again
                        rows = conn.execute(
                            f"{select} WHERE seq > ? AND seq <= ?{filter_sql} ORDER BY seq",
                            [position, claim_end, *params],
                        ).fetchall()
                        end = claim_end
                    else:
                        rows = conn.execute(
                            f"{select} WHERE seq > ? AND seq <= ?{filter_sql} ORDER BY seq LIMIT ?",
                            [position, position + SCAN_WINDOW, *params, limit],
                        ).fetchall()
                        if len(rows) == limit:
                            end = rows[-1][0]
                        else:  # every record up to the window (or the newest) was seen
                            newest = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]
                            end = min(max(newest, position), position + SCAN_WINDOW)
                if item_of is not None:
                    items = complete_items(conn.execute, rows, item_of)
            finally:
                conn.execute("COMMIT")
        claim = Claim(
            exporter,
            [row[0] for row in rows],
            requeued=bool(requeued),
            records=[row_to_record(row[1:]) for row in rows] if item_of is None else [],
            items=items if item_of is not None else [],
            start=position,
            end=end,
            attempts=attempts,
            failing_since=failing_since,
        )
        if requeued:
            return claim
        # 3. move past records the filter skips; remember a new batch, so that a retry (even
        # after a restart) sends the same one
        if not rows:
            if end > position:
                self._write([(_MOVE_ON, [end, None, now_ns, exporter])], owner, exporter)
            return None
        if claim_end is None:
            self._write([(_KEEP_BATCH, [end, now_ns, exporter])], owner, exporter)
        return claim

    def delivered(self, claim: Claim, owner: str, now_ns: int, skipped: Sequence[Skipped] = ()) -> None:
        steps = [*self._finish(claim, now_ns, None), *_counted(claim.exporter, len(claim.seqs), skipped, now_ns)]
        self._write(steps, owner, claim.exporter)

    def progress(
        self,
        claim: Claim,
        owner: str,
        now_ns: int,
        done: int,
        dead: Mapping[int, str],
        lease_ns: int = 0,
        skipped: Sequence[Skipped] = (),
    ) -> Claim:
        """Settle the first `done` records of the claim (delivered, but those at the indexes in `dead`,
        and the `skipped` ones, counted per reason) in one transaction, and return the rest of the
        claim, still claimed (its lease renewed for `lease_ns`: a batch sent record by record may
        take longer than one lease)."""
        if not 0 < done <= len(claim.seqs) or any(not 0 <= i < done for i in dead):
            raise ValueError(f"progress of {done} records (dead {sorted(dead)}) on a batch of {len(claim.seqs)}")
        settled = claim.seqs[:done]
        dead_seqs = {claim.seqs[i]: reason for i, reason in dead.items()}
        delivered = [seq for seq in settled if seq not in dead_seqs]
        attempts = claim.attempts + 1
        steps: list[tuple[str, list[Any]]] = []
        if claim.requeued:
            steps += [(_DELETE_DELIVERY, [claim.exporter, seq]) for seq in delivered]
            steps += [(_MARK_DEAD, [attempts, reason, now_ns, claim.exporter, seq]) for seq, reason in dead_seqs.items()]
        else:
            steps += [(_DEAD, [claim.exporter, seq, attempts, reason, now_ns]) for seq, reason in dead_seqs.items()]
        steps += _counted(claim.exporter, len(delivered), skipped, now_ns)
        if lease_ns:
            steps.append((_RENEW, [now_ns + lease_ns, claim.exporter]))
        rest = Claim(
            claim.exporter,
            claim.seqs[done:],
            claim.requeued,
            records=claim.records[done:],
            items=claim.items[done:],
            start=claim.start if claim.requeued else settled[-1],
            end=claim.end,
        )
        if not rest.seqs:  # the whole batch is settled
            steps += self._finish(claim, now_ns, None)
        elif claim.requeued:
            steps.append((_RESET_REQUEUED, [None, now_ns, claim.exporter]))
        else:
            steps.append((_ADVANCE, [rest.start, now_ns, claim.exporter]))
        self._write(steps, owner, claim.exporter)
        return rest

    def dead(self, claim: Claim, owner: str, now_ns: int, reason: str) -> None:
        attempts = claim.attempts + 1
        if claim.requeued:
            sql = (
                "UPDATE deliveries SET state = 'dead', attempts = attempts + ?, reason = ?, updated_at = ?"
                f" WHERE exporter = ? AND seq IN ({', '.join('?' * len(claim.seqs))})"
            )
            marks = [(sql, [attempts, reason, now_ns, claim.exporter, *claim.seqs])]
        else:
            marks = [(_DEAD, [claim.exporter, seq, attempts, reason, now_ns]) for seq in claim.seqs]
        self._write([*marks, *self._finish(claim, now_ns, reason)], owner, claim.exporter)

    def _finish(self, claim: Claim, now_ns: int, error: str | None) -> list[tuple[str, list[Any]]]:
        steps: list[tuple[str, list[Any]]] = []
        if claim.requeued and error is None:
            steps.append(
                (
                    f"DELETE FROM deliveries WHERE exporter = ? AND seq IN ({', '.join('?' * len(claim.seqs))})",
                    [claim.exporter, *claim.seqs],
                )
            )
        if claim.requeued:
            steps.append((_RESET_REQUEUED, [error, now_ns, claim.exporter]))
        else:
            steps.append((_MOVE_ON, [claim.end, error, now_ns, claim.exporter]))
        return steps

    def retry_later(
        self, claim: Claim, owner: str, now_ns: int, at_ns: int, reason: str, *, counts_toward_give_up: bool = True
    ) -> None:
        params = [counts_toward_give_up, now_ns, at_ns, reason, now_ns, claim.exporter]
        self._write([(_FAILED, params)], owner, claim.exporter)

    def release(self, exporter: str, owner: str) -> None:
        try:
            self._write([(_RELEASE, [exporter, owner])])
        except Exception as error:  # callers catch the backend-neutral StorageError
            if (neutral := self._storage_error(error)) is None:
                raise
            raise neutral from error

    # --- operators ---------------------------------------------------------------------------
    def deliveries(
        self, exporter: str | None, state: str | None, limit: int, filters: Mapping[str, ExportFilter] | None = None
    ) -> list[Delivery]:
        clauses, params = [], []  # type: list[str], list[Any]
        if exporter is not None:
            clauses.append("d.exporter = ?")
            params.append(exporter)
        if state is not None:
            clauses.append("d.state = ?")
            params.append(state)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        conn, lock = self._outbox()
        with lock:
            rows = conn.execute(
                "SELECT d.exporter, d.seq, r.id, r.workspace, r.customer_id, r.kind, r.type, d.state, d.attempts,"
                f" d.reason, d.updated_at FROM deliveries d JOIN records r ON r.seq = d.seq{where}"
                " ORDER BY d.exporter, d.seq LIMIT ?",
                [*params, limit],
            ).fetchall()
            if state in (None, "pending"):
                rows.extend(_batches_in_retry(conn, exporter, filters or {}, limit))
        found = sorted((Delivery(*row) for row in rows), key=lambda d: (d.exporter, d.seq))
        return found[:limit]

    def requeue_dead(self, exporter: str | None, record_ids: list[str] | None) -> Requeued:
        clauses, params = ["state = 'dead'"], []  # type: list[str], list[Any]
        if exporter is not None:
            clauses.append("exporter = ?")
            params.append(exporter)
        if record_ids is not None:
            clauses.append(f"seq IN (SELECT seq FROM records WHERE id IN ({', '.join('?' * len(record_ids))}))")
            params.extend(record_ids)
        where = " AND ".join(clauses)

        def requeue(conn: Connection) -> Requeued:
            exporters = [e for (e,) in conn.execute(f"SELECT DISTINCT exporter FROM deliveries WHERE {where}", params)]
            count = conn.execute(
                f"UPDATE deliveries SET state = 'pending', updated_at = ? WHERE {where}", [time.time_ns(), *params]
            ).rowcount
            return Requeued(count, sorted(exporters))

        result: Requeued = self.transaction(requeue)
        return result

    def exporter_states(self, filters: Mapping[str, ExportFilter] | None = None) -> list[ExporterState]:
        conn, lock = self._outbox()
        with lock:
            conn.execute(self.dialect.begin_read)  # one snapshot: positions, counts and records agree
            try:
                newest = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]
                counts: dict[tuple[str, str], int] = {
                    (e, s): n
                    for e, s, n in conn.execute("SELECT exporter, state, COUNT(*) FROM deliveries GROUP BY 1, 2")
                }
                rows = conn.execute(
                    "SELECT exporter, position, claim_end, attempts, next_attempt_at, last_error, lease_owner,"
                    " lease_until, updated_at, delivered, retried FROM exporter_positions ORDER BY exporter"
                ).fetchall()
                in_retry = Counter(row[0] for row in _batches_in_retry(conn, None, filters or {}, None))
                skipped: dict[str, list[Skipped]] = {}
                for e, reason, count, detail, at in conn.execute(
                    "SELECT exporter, reason, count, detail, updated_at FROM exporter_skips ORDER BY exporter, reason"
                ):
                    skipped.setdefault(e, []).append(Skipped(reason, count, detail, at))
                oldest = {row[0]: self._oldest_pending(conn, row[0], row[1]) for row in rows}
            finally:
                conn.execute("COMMIT")
        return [
            ExporterState(
                exporter=e,
                position=position,
                behind=max(newest - position, 0),
                claim_end=claim_end,
                attempts=attempts,
                next_attempt_at=next_at,
                last_error=error,
                dead=counts.get((e, "dead"), 0),
                pending=counts.get((e, "pending"), 0) + in_retry[e],
                lease_owner=owner,
                lease_until=until,
                updated_at=updated,
                delivered=delivered,
                retried=retried,
                oldest_pending_at=oldest[e],
                skipped=tuple(skipped.get(e, ())),
            )
            for e, position, claim_end, attempts, next_at, error, owner, until, updated, delivered, retried in rows
        ]

    @staticmethod
    def _oldest_pending(conn: Connection, exporter: str, position: int) -> int | None:
        """received_at (ns) of the exporter's oldest record not sent yet: the first past its position
        (before its filter, as `behind`), or a dead delivery sent again. Two index lookups."""
        times = [
            row[0]
            for row in (
                conn.execute("SELECT received_at FROM records WHERE seq > ? ORDER BY seq LIMIT 1", [position]).fetchone(),
                conn.execute(
                    "SELECT r.received_at FROM deliveries d JOIN records r ON r.seq = d.seq"
                    " WHERE d.exporter = ? AND d.state = 'pending' ORDER BY d.seq LIMIT 1",
                    [exporter],
                ).fetchone(),
            )
            if row is not None
        ]
        return min(times) if times else None

def _batches_in_retry(
    conn: Connection, exporter: str | None, filters: Mapping[str, ExportFilter], limit: int | None
) -> list[tuple[Any, ...]]:
    """The records of each exporter's batch in hand that failed and waits for its retry, as
    `pending` delivery rows (the exporter's attempts and last error). A re-sent batch of dead
    deliveries that fails is already there, as its own `pending` rows."""
    # CAST: PostgreSQL cannot tell the type of a parameter that is only tested for NULL
    batches = conn.execute(
        "SELECT exporter, position, claim_end, attempts, last_error, updated_at FROM exporter_positions p"
        " WHERE attempts > 0 AND claim_end IS NOT NULL AND (CAST(? AS TEXT) IS NULL OR exporter = ?) AND NOT EXISTS"
        " (SELECT 1 FROM deliveries d WHERE d.exporter = p.exporter AND d.state = 'pending')",
        [exporter, exporter],
    ).fetchall()
    rows: list[tuple[Any, ...]] = []
    limit_sql, limit_params = ("", []) if limit is None else (" LIMIT ?", [limit])
    for name, position, claim_end, attempts, last_error, updated_at in batches:
        filter_sql, params = _filter_sql(filters.get(name, ExportFilter()))  # what the retry sends
        rows.extend(
            (name, seq, record_id, workspace, customer_id, kind, type_, "pending", attempts, last_error, updated_at)
            for seq, record_id, workspace, customer_id, kind, type_ in conn.execute(
                "SELECT seq, id, workspace, customer_id, kind, type FROM records"
                f" WHERE seq > ? AND seq <= ?{filter_sql} ORDER BY seq{limit_sql}",
                [position, claim_end, *params, *limit_params],
            )
        )
    return rows
