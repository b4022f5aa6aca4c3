"""The daily rollups the series reads equal a direct aggregate over the stored records, whatever
the order records arrive in, with duplicates, and for databases written before the rollups."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import MAX_PREC, Context, Decimal
from pathlib import Path

from spanmeter.money import to_nano
from spanmeter.record import UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.constants import DAY_NS
from spanmeter.store.port import Store
from spanmeter.store.sqlite import SQLiteStore

T0 = 20_400 * DAY_NS  # a midnight in 2025


def random_records(rng: random.Random, count: int) -> list[UsageRecord]:
    records = []
    for n in range(count):
        kind = rng.choice(["llm", "llm", "llm", "event", "meter"])
        meter = rng.choice(["pages", "gpu_seconds"]) if kind == "meter" else None
        records.append(UsageRecord(
            idempotency_key=f"k{rng.randint(0, count)}",  # collisions: duplicates across batches
            kind=kind,
            type="chat" if kind == "llm" else meter or "x",
            meter=meter,
            occurred_at=T0 + rng.randint(0, 20 * DAY_NS),
            workspace=rng.choice(["w1", "w1", "w2"]),
            id=f"id{n}",
            customer_id=rng.choice([None, "acme", "globex", "initech"]),
            conversation_id=rng.choice([None, *(f"c{i}" for i in range(30))]),
            input_tokens=rng.randint(0, 500) if kind == "llm" else None,
            output_tokens=rng.choice([None, rng.randint(0, 100)]) if kind == "llm" else None,
            total_tokens=rng.choice([None, rng.randint(0, 900)]) if kind == "llm" else None,
            cost_usd=rng.choice([None, Decimal(rng.randint(0, 10**6)) / 10**9]),
            # exact decimals, some past the 28 digits a default Decimal context keeps
            quantity=rng.choice([Decimal(1), Decimal("0.1"), Decimal("999999999999999.000000000000000000001")])
            if kind == "meter" else None,
        ))
    return records


def expected(stored: list[UsageRecord], workspace: str, customer: str | None) -> tuple[dict, dict]:  # type: ignore[type-arg]
    totals: defaultdict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    first: dict[str, tuple[int, str | None]] = {}
    for r in sorted(stored, key=lambda r: r.occurred_at):
        if r.workspace != workspace:
            continue
        if r.conversation_id is not None and r.conversation_id not in first:
            first[r.conversation_id] = (r.occurred_at, r.customer_id)
        if customer is not None and r.customer_id != customer:
            continue
        day = totals[r.occurred_at // DAY_NS]
        if r.kind == "llm":
            day[0] += r.total_tokens if r.total_tokens is not None else (r.input_tokens or 0) + (r.output_tokens or 0)
            day[1] += 1
        day[2] += to_nano(r.cost_usd) if r.cost_usd is not None else 0
    new = Counter(at // DAY_NS for at, who in first.values() if customer is None or who == customer)
    return {d: tuple(v) for d, v in totals.items() if any(v)}, dict(new)


def actual(store: Store, workspace: str, customer: str | None) -> tuple[dict, dict]:  # type: ignore[type-arg]
    start, end = T0 - DAY_NS, T0 + 30 * DAY_NS
    totals = {t.day: (t.tokens, t.messages, t.cost_nano) for t in store.daily_totals(workspace, customer, start, end)}
    return {d: v for d, v in totals.items() if v != (0, 0, 0)}, store.new_conversations(workspace, customer, start, end)


def check(store: Store) -> None:
    stored = store.recent(RecordFilter(), 1_000_000)
    for workspace in ("w1", "w2"):
        for customer in (None, "acme", "globex", "initech"):
            assert actual(store, workspace, customer) == expected(stored, workspace, customer), (workspace, customer)


def test_rollups_equal_the_records_in_any_arrival_order(new_store: Callable[[], Store]) -> None:
    rng = random.Random(5)
    records = random_records(rng, 3000)

    async def write() -> Store:
        store = new_store()
        await store.start()
        for start in range(0, len(records), 137):  # many commits; later batches hold earlier records
            await asyncio.gather(store.write(records[start : start + 60]), store.write(records[start + 60 : start + 137]))
        return store

    store = asyncio.run(write())
    try:
        assert 0 < len(store.recent(RecordFilter(), 10_000)) < len(records)  # duplicates were dropped
        check(store)
    finally:
        asyncio.run(store.close())


# SQLite-only: PostgreSQL's first migrations made these rollups, so no database of it lacks them.
def test_a_database_from_before_the_rollups_is_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def write(records: list[UsageRecord]) -> None:
        store = SQLiteStore(path)
        await store.start()
        await store.write(records)
        await store.close()

    asyncio.run(write(random_records(random.Random(9), 800)))
    with sqlite3.connect(path) as conn:  # as an older spanmeter left it
        conn.execute("DROP TABLE usage_daily")
        conn.execute("DROP TABLE conversation_starts")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm005_daily_rollups'")
        conn.execute("DROP TABLE meter_daily")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_meter_rollup'")
    store = SQLiteStore(path)
    store.migrate()
    check(store)
    check_periods(store)


def expected_period(stored: list[UsageRecord], workspace: str, customer: str | None, start: int, end: int) -> tuple:  # type: ignore[type-arg]
    mine = [r for r in stored if r.workspace == workspace]
    first: dict[str, UsageRecord] = {}
    last: dict[str, int] = {}
    for r in sorted(mine, key=lambda r: r.occurred_at):
        if r.conversation_id is not None:
            first.setdefault(r.conversation_id, r)
            last[r.conversation_id] = r.occurred_at
    inside = [r for r in mine if start <= r.occurred_at < end and (customer is None or r.customer_id == customer)]
    llm = [r for r in inside if r.kind == "llm"]
    conversations = sum(
        1 for c, r in first.items()
        if r.occurred_at < end and last[c] >= start and (customer is None or r.customer_id == customer)
    )
    return (
        sum(r.total_tokens if r.total_tokens is not None else (r.input_tokens or 0) + (r.output_tokens or 0) for r in llm),
        sum(r.input_tokens or 0 for r in llm),
        sum(r.output_tokens or 0 for r in llm),
        len(llm),
        sum(r.kind == "event" for r in inside),
        sum(r.kind == "meter" for r in inside),
        conversations,
        sum(to_nano(r.cost_usd) for r in inside if r.cost_usd is not None),
    )


def check_periods(store: Store) -> None:
    stored = store.recent(RecordFilter(), 1_000_000)
    for first_day, last_day in ((0, 21), (3, 4), (5, 12), (19, 25)):
        start, end = T0 + first_day * DAY_NS, T0 + last_day * DAY_NS
        for workspace in ("w1", "w2"):
            for customer in (None, "acme", "initech"):
                totals = store.period_totals(workspace, customer, start, end)
                got = (totals.tokens, totals.input_tokens, totals.output_tokens, totals.messages, totals.events,
                       totals.meter_records, totals.conversations, totals.cost_nano)
                assert got == expected_period(stored, workspace, customer, start, end), (first_day, workspace, customer)
                quantities: defaultdict[str, Decimal] = defaultdict(Decimal)
                for r in stored:
                    if (r.kind == "meter" and r.workspace == workspace and start <= r.occurred_at < end
                            and customer in (None, r.customer_id) and r.quantity is not None):
                        quantities[r.type] = Decimal(quantities[r.type]).fma(1, r.quantity, Context(prec=MAX_PREC))
                assert totals.meter_quantities == quantities, (first_day, workspace, customer)


def test_period_totals_equal_the_records(new_store: Callable[[], Store]) -> None:
    records = random_records(random.Random(11), 2000)

    async def write() -> Store:
        store = new_store()
        await store.start()
        for start in range(0, len(records), 90):
            await store.write(records[start : start + 90])
        return store

    store = asyncio.run(write())
    try:
        check_periods(store)
    finally:
        asyncio.run(store.close())
