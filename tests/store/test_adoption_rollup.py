"""The adoption rollups give the adoption rows a direct computation over the stored product events
gives: for periods starting mid-day, with a category, in any arrival order, with duplicates, and
for databases written before the rollups."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from spanmeter.record import Product, UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.constants import DAY_NS
from spanmeter.store.queries import ProductAdoption
from spanmeter.store.sqlite import SQLiteStore
from spanmeter.usage_schema import EVENT_FAMILIES

T0 = 20_400 * DAY_NS  # a midnight in 2025
ACTIVATED = ("activation", "retention", "expansion", "commercial")


def product_events(rng: random.Random, count: int) -> list[UsageRecord]:
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
            idempotency_key=f"k{rng.randint(0, count)}",  # collisions: duplicates across batches
            kind=rng.choice(["event", "event", "event", "llm"]),
            type="e",
            occurred_at=T0 + rng.randint(0, 12 * DAY_NS),
            workspace=rng.choice(["w1", "w1", "w2"]),
            id=f"id{n}",
            user_id=rng.choice([None, *(f"u{i}" for i in range(12))]),
            email=rng.choice([None, "a@x.io", "b@y.io"]),
            account_domain=rng.choice([None, "x.io", "y.io", "z.io"]),
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


def check(store: SQLiteStore) -> None:
    stored = store.recent(RecordFilter(), 1_000_000)
    for workspace in ("w1", "w2"):
        for since in (T0 - DAY_NS, T0 + 3 * DAY_NS + 12_345, T0 + 7 * DAY_NS, T0 + 11 * DAY_NS + 1):
            for category in (None, "sdk", "", "db", "none-such"):
                actual = sorted(store.product_adoption(workspace, since, category), key=_key)
                assert actual == expected(stored, workspace, since, category), (workspace, since, category)


def test_adoption_rollups_equal_the_events_in_any_arrival_order(new_store: Callable[[], SQLiteStore]) -> None:
    records = product_events(random.Random(3), 2500)

    async def write() -> SQLiteStore:
        store = new_store()
        await store.start()
        for start in range(0, len(records), 131):  # many commits; later batches hold earlier events
            await asyncio.gather(store.write(records[start : start + 50]), store.write(records[start + 50 : start + 131]))
        return store

    store = asyncio.run(write())
    try:
        check(store)
    finally:
        asyncio.run(store.close())


# SQLite-only: PostgreSQL's first migrations made these rollups, so no database of it lacks them.
def test_a_database_from_before_the_adoption_rollups_is_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def write(records: list[UsageRecord]) -> None:
        store = SQLiteStore(path)
        await store.start()
        await store.write(records)
        await store.close()

    asyncio.run(write(product_events(random.Random(8), 900)))
    with sqlite3.connect(path) as conn:  # as an older spanmeter left it
        for table in ("adoption_daily", "adoption_developers", "adoption_accounts"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_adoption_rollups'")
    store = SQLiteStore(path)
    store.migrate()
    check(store)
