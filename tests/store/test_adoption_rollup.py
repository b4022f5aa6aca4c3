"""The adoption rollups give the adoption rows a direct computation over the stored product events
gives: for periods starting at a midnight, an hour or mid-hour, with a category, for developers
and accounts whose last event moves to a later day or hour, in any arrival order, with
duplicates, and for databases written before the rollups or before their last-event counts."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psycopg

from spanmeter.record import Product, UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.constants import DAY_NS, HOUR_NS
from spanmeter.store.postgres import PostgresStore
from spanmeter.store.queries import ProductAdoption
from spanmeter.store.sqlite import SQLiteStore
from spanmeter.usage_schema import EVENT_FAMILIES

T0 = 20_400 * DAY_NS  # a midnight in 2025
ACTIVATED = ("activation", "retention", "expansion", "commercial")


def product_events(
    rng: random.Random, count: int, *, developers: int = 12, accounts: int = 3, days: int = 12, start: int = T0
) -> list[UsageRecord]:
    products = [
        Product("p1", "Widget", "sdk", "1.0", "sdk"),
        Product("p1", "Widget renamed", "sdk", "1.1", "sdk"),  # one product, names vary
        Product("p2", None, None, None, "db"),
        Product(None, "by-name-only", "cli", None, None),
        Product("p3", "Empty category", None, None, ""),
        Product("p3", "Empty category", None, None, None),  # '' and no category stay apart
    ]
    records = []
    for n in range(count):
        records.append(UsageRecord(
            idempotency_key=f"k{start}-{rng.randint(0, count)}",  # collisions: duplicates across batches
            kind=rng.choice(["event", "event", "event", "llm"]),
            type="e",
            occurred_at=start + rng.randint(0, days * DAY_NS),
            workspace=rng.choice(["w1", "w1", "w2"]),
            id=f"id{n}",
            user_id=rng.choice([None, *(f"u{i}" for i in range(developers))]),
            email=rng.choice([None, "a@x.io", "b@y.io"]),
            account_domain=rng.choice([None, *(f"{i}.io" for i in range(accounts))]),
            event_name="e",
            event_family=rng.choice([None, *EVENT_FAMILIES]),
            product=rng.choice([None, *products]),
        ))  # fmt: skip
    return records


def expected(stored: list[UsageRecord], workspace: str, since: int, category: str | None) -> list[ProductAdoption]:
    groups: defaultdict[str, list[UsageRecord]] = defaultdict(list)
    for r in stored:
        p = r.product
        if r.workspace != workspace or r.kind != "event" or p is None or r.occurred_at < since:
            continue
        if (p.id is None and p.name is None) or (category is not None and p.category != category):
            continue
        groups[p.id if p.id is not None else p.name].append(r)  # type: ignore[index]
    rows = []
    for events in groups.values():
        developer = lambda r: r.user_id if r.user_id is not None else r.email
        most = lambda values: max((v for v in values if v is not None), default=None)
        rows.append(
            ProductAdoption(
                product_id=most(r.product.id for r in events),  # type: ignore[union-attr]
                product_name=most(r.product.name for r in events),  # type: ignore[union-attr]
                product_type=most(r.product.type for r in events),  # type: ignore[union-attr]
                product_category=most(r.product.category for r in events),  # type: ignore[union-attr]
                developers=len({developer(r) for r in events} - {None}),
                accounts=len({r.account_domain for r in events} - {None}),
                events=len(events),
                activated_developers=len({developer(r) for r in events if r.event_family in ACTIVATED} - {None}),
                families={f: sum(r.event_family == f for r in events) for f in EVENT_FAMILIES},
            )
        )
    return sorted(rows, key=_key)


def _key(row: ProductAdoption) -> str:
    return row.product_id or row.product_name or ""


# Periods from before the first event to after the last: at a midnight, at an hour, mid-hour, a
# nanosecond either side of an hour, and in the last hour of a day.
SINCE = (
    T0 - DAY_NS,
    T0 + 3 * DAY_NS + 12_345,
    T0 + 7 * DAY_NS,
    T0 + 11 * DAY_NS + 1,
    T0 + 5 * DAY_NS + 7 * HOUR_NS,
    T0 + 5 * DAY_NS + 7 * HOUR_NS - 1,
    T0 + 8 * DAY_NS + 23 * HOUR_NS + 1_800 * 10**9,
    T0 + 13 * DAY_NS,
)


def check(store: SQLiteStore | PostgresStore, sinces: tuple[int, ...] = SINCE) -> None:
    stored = store.recent(RecordFilter(), 1_000_000)
    for workspace in ("w1", "w2"):
        for since in sinces:
            for category in (None, "sdk", "", "db", "none-such"):
                actual = sorted(store.product_adoption(workspace, since, category), key=_key)
                assert actual == expected(stored, workspace, since, category), (workspace, since, category)


def write_in_batches(store: SQLiteStore | PostgresStore, records: list[UsageRecord]) -> None:
    async def write() -> None:
        for start in range(0, len(records), 131):  # many commits; later batches hold earlier events
            await asyncio.gather(store.write(records[start : start + 50]), store.write(records[start + 50 : start + 131]))

    asyncio.run(write())


def started(store: SQLiteStore | PostgresStore) -> SQLiteStore | PostgresStore:
    asyncio.run(store.start())
    return store


def test_adoption_rollups_equal_the_events_in_any_arrival_order(new_store: Callable[[], SQLiteStore]) -> None:
    store = started(new_store())
    write_in_batches(store, product_events(random.Random(3), 2500))
    check(store)


def test_developers_and_accounts_count_where_their_last_event_moved(new_store: Callable[[], SQLiteStore]) -> None:
    """Many developers and accounts, each with a few events: their last events (and activations)
    fall on every day and hour, and move to later ones as later batches bring newer events, or
    stay as late batches bring older ones."""
    store = started(new_store())
    rng = random.Random(5)
    write_in_batches(store, product_events(rng, 1200, developers=300, accounts=200, days=6))
    check(store)
    later = product_events(rng, 900, developers=300, accounts=200, days=6, start=T0 + 5 * DAY_NS + 3 * HOUR_NS)
    earlier = product_events(rng, 600, developers=300, accounts=200, days=10, start=T0 - DAY_NS)
    write_in_batches(store, later + earlier)  # moved ahead, then late records that move nothing
    check(store)


def test_a_developer_is_active_exactly_while_their_last_event_is_in_the_period(
    new_store: Callable[[], SQLiteStore],
) -> None:
    store = started(new_store())
    widget = Product("p1", "Widget", None, None, None)

    def event(key: str, at: int, family: str | None = None) -> UsageRecord:
        return UsageRecord(
            idempotency_key=key, kind="event", type="e", occurred_at=at, workspace="w1", id=f"{key}@{at}",
            user_id="u1", account_domain="x.io", event_name="e", event_family=family, product=widget,
        )  # fmt: skip

    def active(since: int) -> tuple[int, int, int]:
        rows = store.product_adoption("w1", since, None)  # none: no events in the period
        return (rows[0].developers, rows[0].activated_developers, rows[0].accounts) if rows else (0, 0, 0)

    first = T0 + DAY_NS + 10 * HOUR_NS + 5  # day 1, 10:00
    asyncio.run(store.write([event("a", first, "activation")]))
    assert active(first) == (1, 1, 1)
    assert active(first + 1) == (0, 0, 0)
    assert active(first - 5) == (1, 1, 1)  # from 10:00 sharp
    moved = T0 + 3 * DAY_NS + 2 * HOUR_NS + 30  # day 3, 02:00: the last event moves two days on
    asyncio.run(store.write([event("b", moved, "intent"), event("a", moved, "intent")]))  # "a" again: a duplicate
    assert active(first + 1) == (1, 0, 1)
    assert active(moved) == (1, 0, 1)
    assert active(moved + 1) == (0, 0, 0)
    asyncio.run(store.write([event("c", first - 2 * DAY_NS, "retention")]))  # a late, older one moves nothing
    assert active(first - 2 * DAY_NS) == (1, 1, 1)
    assert active(first - 2 * DAY_NS + 1) == (1, 1, 1)  # the activation at day 1, 10:00 is the last
    assert active(first + 1) == (1, 0, 1)
    assert [r.events for r in store.product_adoption("w1", first - 2 * DAY_NS, None)] == [3]


def _write_and_close(path: Path, records: list[UsageRecord]) -> None:
    store = started(SQLiteStore(path))
    write_in_batches(store, records)
    asyncio.run(store.close())


# SQLite-only: PostgreSQL's first migrations made these rollups, so no database of it lacks them.
def test_a_database_from_before_the_adoption_rollups_is_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _write_and_close(path, product_events(random.Random(8), 900))
    with sqlite3.connect(path) as conn:  # as an older spanmeter left it
        for table in ("adoption_daily", "adoption_hourly", "adoption_developers", "adoption_accounts"):
            conn.execute(f"DROP TABLE {table}")  # their triggers go with them
        conn.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m011_adoption_rollups', 'm016_adoption_histogram')")
    store = SQLiteStore(path)
    store.migrate()
    check(store)


def test_a_database_from_before_the_last_event_counts_is_backfilled_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rng = random.Random(9)
    _write_and_close(path, product_events(rng, 900, developers=100, accounts=50))
    with sqlite3.connect(path) as conn:  # as a spanmeter with the adoption rollups but not m016 left it
        conn.execute("DROP TABLE adoption_hourly")
        for source in ("adoption_developers", "adoption_accounts"):
            conn.execute(f"DROP TRIGGER {source}_added")
            conn.execute(f"DROP TRIGGER {source}_moved")
        for column in ("last_developers", "last_activated", "last_accounts"):
            conn.execute(f"ALTER TABLE adoption_daily DROP COLUMN {column}")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm016_adoption_histogram'")
    store = started(SQLiteStore(path))  # a restart: migrates, then writes on
    try:
        check(store)
        write_in_batches(store, product_events(rng, 600, developers=100, accounts=50, start=T0 + 2 * DAY_NS))
        check(store)
    finally:
        asyncio.run(store.close())


def test_a_postgresql_database_from_before_the_last_event_counts_is_backfilled_then_kept(postgres_dsn: str) -> None:
    rng = random.Random(10)
    store = started(PostgresStore(postgres_dsn))
    write_in_batches(store, product_events(rng, 900, developers=100, accounts=50))
    asyncio.run(store.close())
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # as a spanmeter without m008 left it
        conn.execute("DROP TABLE adoption_hourly")
        for source in ("adoption_developers", "adoption_accounts"):
            conn.execute(f"DROP FUNCTION spanmeter_{source}_moved CASCADE")  # and its triggers
        for column in ("last_developers", "last_activated", "last_accounts"):
            conn.execute(f"ALTER TABLE adoption_daily DROP COLUMN {column}")
        conn.execute("DELETE FROM spanmeter_migrations WHERE name = 'm008_adoption_histogram'")
    store = started(PostgresStore(postgres_dsn))
    try:
        check(store)
        write_in_batches(store, product_events(rng, 600, developers=100, accounts=50, start=T0 + 2 * DAY_NS))
        check(store)
    finally:
        asyncio.run(store.close())
