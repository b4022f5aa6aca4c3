"""From/to pages: the store picks the cheaper plan from the daily rollups, and both plans give the
same page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from spanmeter.record import UsageRecord
from spanmeter.store.constants import DAY_NS
from spanmeter.store.queries import RecordQuery
from spanmeter.store.sql.queries import build_page_sql
from spanmeter.store.sqlite import SQLiteStore

T0 = 20_400 * DAY_NS


def test_recent_ranges_walk_seq_old_ranges_read_the_time_index(new_store: Callable[[], SQLiteStore]) -> None:
    records = [  # 20 days, arriving in time order, as live traffic does
        UsageRecord(idempotency_key=f"k{d}-{n}", kind="llm", type="chat", occurred_at=T0 + d * DAY_NS + n,
                    workspace="w", id=f"{d}-{n}", input_tokens=1, output_tokens=1)
        for d in range(20) for n in range(30)
    ]

    async def write() -> SQLiteStore:
        store = new_store()
        await store.start()
        await store.write(records)
        return store

    store = asyncio.run(write())
    try:
        recent = RecordQuery("w", from_ns=T0 + 15 * DAY_NS, limit=10)
        old_day = RecordQuery("w", from_ns=T0 + 2 * DAY_NS, to_ns=T0 + 3 * DAY_NS, limit=10)
        early_asc = RecordQuery("w", from_ns=T0 + 1 * DAY_NS, to_ns=T0 + 3 * DAY_NS, limit=10, order="asc")
        assert store.queries._walk_seq_for_time_range(recent)  # nothing newer to pass
        assert not store.queries._walk_seq_for_time_range(old_day)  # 17 newer days to pass
        assert store.queries._walk_seq_for_time_range(early_asc)  # from the oldest: 1 day to pass, 2 inside
        for query in (recent, old_day, early_asc):
            pages = [
                store._fetch(*build_page_sql(query, walk_seq=walk, dialect=store.queries.dialect))
                for walk in (False, True)
            ]
            assert pages[0] == pages[1] and len(pages[0]) == 10
        assert [r.id for _, r in store.query_records(old_day)] == [f"2-{n}" for n in range(29, 19, -1)]
    finally:
        asyncio.run(store.close())
