"""meta[key]=value pages match exactly, whatever characters keys and values hold."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from spanmeter.errors import StorageError
from spanmeter.record import UsageRecord
from spanmeter.store.port import Store
from spanmeter.store.queries import RecordQuery

META = [
    {"plan": "pro"},
    {"plan": "pro plus"},  # a longer value starting like the first
    {"plan": "pró", "région": "Zürich"},
    {"plan": 'say "hi"', "path": "a\\b"},
    {"note": '"plan": "pro"'},  # the text of another entry inside a value
]


def test_meta_filters_match_exactly(new_store: Callable[[], Store]) -> None:
    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write([
            UsageRecord(idempotency_key=f"k{i}", kind="event", type="e", occurred_at=1, id=str(i), meta=meta)
            for i, meta in enumerate(META)
        ])
        return store

    store = asyncio.run(write())
    try:
        def ids(*meta: tuple[str, str]) -> list[str]:
            return sorted(r.id for _, r in store.query_records(RecordQuery("default", meta=meta)))

        assert ids(("plan", "pro")) == ["0"]
        assert ids(("plan", "pro plus")) == ["1"]
        assert ids(("plan", "pró"), ("région", "Zürich")) == ["2"]
        assert ids(("plan", 'say "hi"')) == ["3"]
        assert ids(("path", "a\\b")) == ["3"]
        assert ids(("note", '"plan": "pro"')) == ["4"]
        assert ids(("plan", "missing")) == []
    finally:
        asyncio.run(store.close())


def test_keys_with_quotes_and_backslashes(new_store: Callable[[], Store]) -> None:
    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write([
            UsageRecord(idempotency_key="a", kind="event", type="e", occurred_at=1, id="a", meta={'my "key"': "v"}),
            UsageRecord(idempotency_key="b", kind="event", type="e", occurred_at=1, id="b", meta={"back\\slash": "v"}),
        ])
        return store

    store = asyncio.run(write())
    try:
        for key, expected in (('my "key"', ["a"]), ("back\\slash", ["b"])):
            found = [r.id for _, r in store.query_records(RecordQuery("default", meta=((key, "v"),)))]
            assert found == expected
    finally:
        asyncio.run(store.close())


def test_a_nul_in_one_records_meta_breaks_no_ones_filters(new_store: Callable[[], Store]) -> None:
    """A meta value holding U+0000 (JSON's \\u0000, which PostgreSQL's jsonb refuses) is either
    refused with its record or stored: the other records' meta filters keep working. (The query
    API refuses a NUL in a filter: tests/api/test_records.py.)"""

    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write([UsageRecord(idempotency_key="ok", kind="event", type="e", occurred_at=1, id="ok",
                                       meta={"plan": "pro"})])
        with contextlib.suppress(StorageError):
            await store.write([UsageRecord(idempotency_key="nul", kind="event", type="e", occurred_at=2, id="nul",
                                           meta={"plan": "a\x00b"})])
        return store

    store = asyncio.run(write())
    try:
        assert [r.id for _, r in store.query_records(RecordQuery("default", meta=(("plan", "pro"),)))] == ["ok"]
        assert [r.id for _, r in store.query_records(RecordQuery("default", meta=(("plan", "x"),)))] == []
    finally:
        asyncio.run(store.close())
