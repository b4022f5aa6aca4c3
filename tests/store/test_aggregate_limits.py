"""A meter query whose answer has more rows than `max_rows` is refused (TooManyRows), whichever
source answers it (daily rollups, their JSON, the per-model rollup, the records), and one that
fits is answered in full; on each backend (the `new_store` fixture)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from spanmeter.store.aggregate import AggregateQuery, TooManyRows
from spanmeter.store.port import Store
from spanmeter.store.queries import RecordQuery
from tests.store.test_aggregate_json import batch

# (query, its source): 12 days x 5 customers, models and kinds, in workspace w1
QUERIES = [
    (AggregateQuery(("cost",), ("customer",), RecordQuery("w1"), "day"), "rollup"),
    (AggregateQuery(("cost",), ("customer",), RecordQuery("w1"), "day", as_json=True), "rollup"),
    (AggregateQuery(("cost", "records"), ("kind",), RecordQuery("w1"), "day"), "rollup"),
    (AggregateQuery(("cost",), ("customer",), RecordQuery("w1"), "hour"), "records"),
]


def test_answers_over_max_rows_are_refused(new_store: Callable[[], Store]) -> None:
    async def write() -> Store:
        store = new_store()
        await store.start()
        await store.write(batch(random.Random(2), 0, 300))
        return store

    store = asyncio.run(write())
    for query, source in QUERIES:
        answer = store.aggregate(query)
        assert answer.source == source, query
        count = len(answer.rows) if answer.rows_json is None else answer.rows_json.count(b'"windowStart"')
        assert count > 10, query
        with pytest.raises(TooManyRows):
            store.aggregate(AggregateQuery(**{**_fields(query), "max_rows": count - 1}))
        assert store.aggregate(AggregateQuery(**{**_fields(query), "max_rows": count})).source == source


def _fields(query: AggregateQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in AggregateQuery.__dataclass_fields__}
