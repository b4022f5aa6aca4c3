"""PostgreSQL: a record whose transaction commits late is never passed over by a page cursor or an
exporter position, however two instances' writes interleave (store/postgres/records.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.outbox import Claim, ExportFilter, NotDue
from spanmeter.store.postgres import PostgresStore
from spanmeter.store.postgres import records as writer
from spanmeter.store.postgres.connection import SqliteLike, connect
from spanmeter.store.queries import RecordQuery
from tests.exporters.harness import wait_for
from tests.postgres_server import PostgresServer


def record(key: str) -> UsageRecord:
    now = time.time_ns()
    return UsageRecord(idempotency_key=key, kind="event", type="signup", occurred_at=now, id=new_record_id(),
                       received_at=now, workspace="w")


def in_thread(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn)
    thread.start()
    return thread


def test_a_late_commit_is_neither_skipped_by_pages_nor_by_exporters(postgres: PostgresServer) -> None:
    dsn = postgres.new_database()
    first, second = PostgresStore(dsn), PostgresStore(dsn)  # two instances
    asyncio.run(first.start())
    asyncio.run(second.start())
    try:
        first.register_exporter("x", "beginning")
        # Instance one's writer is inside its transaction: it took the next seq, not committed yet.
        slow = SqliteLike(connect(dsn, 5))
        writer.begin(slow)
        writer.insert(slow, [[record("early")]])
        # Instance two writes meanwhile; without the write lock it would take the seq after and
        # commit first, and a reader would see it and move past the uncommitted one for good.
        late = in_thread(lambda: asyncio.run(second.write([record("late")])))
        waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        wait_for(lambda: slow.conn.execute(waiting).fetchone() == (1,), what="the second writer at the lock")
        assert first.query_records(RecordQuery("w", order="asc")) == []  # nothing committed: nothing to page past
        claims: list[Claim | NotDue | None] = []  # an exporter's claim waits for the lock too
        claiming = in_thread(lambda: claims.append(first.claim("x", ExportFilter(), 10, "me", time.time_ns(), 10**10)))
        wait_for(lambda: slow.conn.execute(waiting).fetchone() == (2,), what="the claim at the lock")
        slow.conn.execute("COMMIT")
        late.join(10)
        claiming.join(10)

        pages = first.query_records(RecordQuery("w", order="asc", limit=1))
        after = first.query_records(RecordQuery("w", order="asc", limit=1, after_seq=pages[0][0]))
        assert [r.idempotency_key for _, r in pages + after] == ["early", "late"]
        sent: list[str] = []
        while isinstance(batch := claims.pop() if claims else first.claim("x", ExportFilter(), 10, "me",
                                                                            time.time_ns(), 10**10), Claim):
            sent += [r.idempotency_key for r in batch.records]
            first.delivered(batch, "me", time.time_ns())
        assert batch is None and sent == ["early", "late"]
        slow.close()
    finally:
        asyncio.run(first.close())
        asyncio.run(second.close())
