"""The store's SQL answers the same on both backends for values that a statement rewritten on its
way to the database would break: quotes, `%`, `?` and `%s` in meta keys, meta values and tags,
unicode, and NULLs in sorted groups (SQLite sorts them first, PostgreSQL last unless told)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from spanmeter.record import UsageRecord
from spanmeter.store.aggregate import AggregateQuery
from spanmeter.store.port import Store
from spanmeter.store.postgres.dialect import psycopg_markers
from spanmeter.store.queries import RecordQuery
from tests.postgres_server import PostgresServer

AWKWARD = ["100%", "%s", "%(x)s", "?", "a ? b", "it's", 'say "hi"', "?%'\"", "back\\slash", "Zürich 日本 🙂", ""]


def _stored(new_store: Callable[[], Store], records: list[UsageRecord]) -> Store:
    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write(records)
        return store

    return asyncio.run(write())


def _event(n: int, meta: dict[str, str], tags: list[str] | None = None, customer_id: str | None = None) -> UsageRecord:
    return UsageRecord(
        idempotency_key=f"k{n}", kind="event", type="e", occurred_at=1 + n, id=str(n), meta=meta, tags=tags or [],
        customer_id=customer_id,
    )


def test_meta_and_tag_filters_with_awkward_text(new_store: Callable[[], Store]) -> None:
    records = [_event(i, meta={text: text, "plain": text}, tags=[text]) for i, text in enumerate(AWKWARD)]
    records.append(_event(len(AWKWARD), meta={"plain": "%"}, tags=["%"]))  # `%` alone matches no other
    store = _stored(new_store, records)
    try:
        def ids(query: RecordQuery) -> list[str]:
            return sorted(r.id for _, r in store.query_records(query))

        for i, text in enumerate(AWKWARD):
            assert ids(RecordQuery("default", meta=((text, text),))) == [str(i)], text
            assert ids(RecordQuery("default", meta=(("plain", text),))) == [str(i)], text
            assert ids(RecordQuery("default", tag=text)) == [str(i)], text
            assert ids(RecordQuery("default", meta=(("plain", text + "~"),))) == [], text
        assert ids(RecordQuery("default", meta=(("plain", "%"),))) == [str(len(AWKWARD))]
        assert ids(RecordQuery("default", tag="%")) == [str(len(AWKWARD))]
    finally:
        asyncio.run(store.close())


def test_groups_by_awkward_meta_values_and_none_first(new_store: Callable[[], Store]) -> None:
    records = [_event(i, meta={"plan": text}, customer_id=text or None) for i, text in enumerate(AWKWARD)]
    records.append(_event(len(AWKWARD), meta={"other": "x"}))  # no plan, no customer
    store = _stored(new_store, records)
    try:
        by_plan = store.aggregate(AggregateQuery(("records",), ("meta.plan",), RecordQuery("default")))
        assert by_plan.source == "records"
        assert [(row.group, row.values) for row in by_plan.rows] == [
            ((None,), {"records": 1}),  # NULL first, as SQLite sorts it
            *(((text,), {"records": 1}) for text in sorted(AWKWARD)),  # bytewise, as SQLite's BINARY
        ]
        by_customer = store.aggregate(AggregateQuery(("records",), ("customer", "meta.plan"), RecordQuery("default")))
        assert [row.group for row in by_customer.rows][:2] == [(None, None), (None, "")]
        assert [row.group for row in by_customer.rows][2:] == sorted((t, t) for t in AWKWARD if t)
    finally:
        asyncio.run(store.close())


def test_markers_outside_quotes_only() -> None:
    assert psycopg_markers("SELECT '?', \"a?\", ? WHERE x LIKE 'a%' AND y = ?") == (
        "SELECT '?', \"a?\", %s WHERE x LIKE 'a%%' AND y = %s"
    )
    assert psycopg_markers("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"


def test_literals_with_markers_reach_postgres_unchanged(postgres: PostgresServer) -> None:
    from spanmeter.store.postgres.connection import SqliteLike, connect

    conn = SqliteLike(connect(postgres.new_database(), 5.0))
    try:
        row = conn.execute("SELECT '?%s''%', ?::text, 'a%%b', ?::text", ["%s", "?"]).fetchone()
        assert row == ("?%s'%", "%s", "a%%b", "?")
    finally:
        conn.close()


def test_unknown_models_sort_none_first(new_store: Callable[[], Store]) -> None:
    names = [(None, None), ("p", None), (None, "m"), ("p", "m"), ("p", "%?")]
    store = _stored(new_store, [
        UsageRecord(idempotency_key=f"u{i}", kind="llm", type="chat", occurred_at=1, id=f"u{i}", provider=provider,
                    request_model=model, cost_source="unknown", input_tokens=1, output_tokens=1)
        for i, (provider, model) in enumerate(names)
    ])
    try:
        found = [(m.provider, m.model) for m in store.unknown_models("default")]
        assert found == [(None, None), (None, "m"), ("p", None), ("p", "%?"), ("p", "m")]
    finally:
        asyncio.run(store.close())
