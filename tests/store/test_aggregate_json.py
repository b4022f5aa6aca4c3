"""Meter query rows built as JSON by SQLite from the rollups (store/sqlite/aggregate_json.py) equal
the rows the store computes in Python, rendered by the API, and stay exact as records arrive:
a day's remembered JSON is rebuilt once a record of that day is stored."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spanmeter.api.aggregate import render
from spanmeter.record import UsageRecord
from spanmeter.store.aggregate import AggregateQuery, TooManyRows
from spanmeter.store.constants import DAY_NS
from spanmeter.store.queries import RecordQuery
from spanmeter.store.sqlite import SQLiteStore

T0 = 20_400 * DAY_NS  # a midnight in 2025
CUSTOMERS = (None, "acme", "globex", "ÿ-unicode \"quoted\"", "tab\tcustomer")


def batch(rng: random.Random, start: int, count: int, days: int = 12) -> list[UsageRecord]:
    records = []
    for n in range(start, start + count):
        kind = rng.choice(["llm", "llm", "event", "meter"])
        records.append(UsageRecord(
            idempotency_key=f"k{n}",
            kind=kind,
            type="chat" if kind == "llm" else "x",
            meter="pages" if kind == "meter" else None,
            quantity=Decimal(1) if kind == "meter" else None,
            occurred_at=T0 + rng.randint(0, days * DAY_NS - 1),
            workspace=rng.choice(["w1", "w1", "w2"]),
            id=f"id{n}",
            customer_id=rng.choice(CUSTOMERS),
            input_tokens=rng.randint(0, 500) if kind == "llm" else None,
            output_tokens=rng.choice([None, rng.randint(0, 100)]) if kind == "llm" else None,
            cost_usd=rng.choice([None, Decimal(rng.randint(0, 10**7)) / 10**9, Decimal(rng.randint(1, 9))]),
        ))  # fmt: skip
    return records


async def write(path: Path, records: list[UsageRecord]) -> None:
    """Store records as a collector would (another store instance than the one that reads)."""
    store = SQLiteStore(path)
    await store.start()
    try:
        await store.write(records)
    finally:
        await store.close()


QUERIES = [
    (("cost", "total_tokens", "records"), ("customer",), "day", None, (0, 12)),
    (("cost", "input_tokens", "output_tokens"), ("customer",), "day", None, (None, None)),
    (("records", "cost"), (), "day", None, (2, 9)),
    (("cost",), ("customer",), "day", "acme", (0, 12)),
    (("cost", "records"), (), "day", "globex", (None, None)),
    (("cost", "total_tokens", "records"), ("customer",), "month", None, (0, 12)),
    (("cost", "records"), ("customer",), "none", None, (3, 7)),
    (("records",), (), "none", None, (None, None)),
    (("cost",), ("customer",), "month", "acme", (None, None)),
]


def both(store: SQLiteStore, query: AggregateQuery) -> tuple[Any, Any]:
    """(the JSON path's rows, the Python path's rows), parsed."""
    fast = store.aggregate(replace(query, as_json=True))
    slow = store.aggregate(query)
    assert fast.source == slow.source == "rollup"
    assert fast.rows_json is not None and not fast.rows
    return json.loads(render(query, fast))["rows"], json.loads(render(query, slow))["rows"]


@pytest.mark.parametrize(("metrics", "group_by", "window", "customer", "days"), QUERIES)
# SQLite-only: SQLite builds the rollup JSON itself; PostgreSQL's rows are rendered by the API.
def test_json_rows_equal_the_python_rows_as_records_arrive(
    tmp_path: Path,
    metrics: tuple[str, ...],
    group_by: tuple[str, ...],
    window: str,
    customer: str | None,
    days: tuple[int | None, int | None],
) -> None:
    rng = random.Random(5)
    store = SQLiteStore(tmp_path / "s.db")  # reads, and remembers days, across the writes

    start, end = (None if d is None else T0 + d * DAY_NS for d in days)
    where = RecordQuery("w1", equals=(("customer_id", customer),) if customer else (), from_ns=start, to_ns=end)
    query = AggregateQuery(metrics, group_by, where, window)  # type: ignore[arg-type]
    asyncio.run(write(tmp_path / "s.db", batch(rng, 0, 300)))
    fast, slow = both(store, query)
    assert fast == slow and fast
    # New records on some of the days already answered (and on a new one): the days they touch
    # are rebuilt, the others come from memory, and the answer is again the exact one.
    for round_ in range(3):
        asyncio.run(write(tmp_path / "s.db", batch(rng, 1000 * (round_ + 1), 7, days=14)))
        fast, slow = both(store, query)
        assert fast == slow
    store.readers.close()


# SQLite-only: the SQLite-built JSON's row count (test_aggregate_limits.py: every source, both backends).
def test_an_answer_over_max_rows_is_refused(tmp_path: Path) -> None:
    asyncio.run(write(tmp_path / "s.db", batch(random.Random(2), 0, 200)))
    store = SQLiteStore(tmp_path / "s.db")
    query = AggregateQuery(("cost",), ("customer",), RecordQuery("w1"), "day", max_rows=10, as_json=True)
    with pytest.raises(TooManyRows):
        store.aggregate(query)
    store.readers.close()
