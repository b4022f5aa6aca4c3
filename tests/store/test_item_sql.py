"""store/sqlite/item_sql.py builds a record's item JSON in SQLite; it must equal the query API's item_json
for every record (exporters send it, receivers parse it with the same UsageItem model)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.api.models import UsageItem
from spanmeter.encoding import item_json
from spanmeter.record import Product, UsageRecord
from spanmeter.store.schema import COLUMNS, column_type, record_to_row, row_to_record
from spanmeter.store.sqlite.item_sql import ITEM_JSON

text = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", "ü€ \"quoted\"\n", "a\\b", "0"]))
tokens = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))
money = st.one_of(
    st.none(),
    st.decimals(min_value=Decimal(0), max_value=Decimal(10**6), places=9, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal(0), Decimal("0.000000001"), Decimal(1), Decimal(10), Decimal("12.5"), Decimal("-0.25")]),
)
quantity = st.one_of(
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("2.50"), Decimal(1000), Decimal("2.0"), Decimal(0), Decimal("1E+3"), Decimal("1E-7"),
                     Decimal(-3), Decimal("0.1"), Decimal(12345678901234567890), Decimal("3.14159265358979323846")]),
)
times = st.one_of(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=-(10**18), max_value=-1))
products = st.one_of(st.none(), st.builds(Product, id=text, name=text, type=text, version=text, category=text))


@st.composite
def records(draw: Any) -> UsageRecord:
    kind = draw(st.sampled_from(["llm", "event", "meter"]))
    return UsageRecord(
        idempotency_key=draw(st.text(min_size=1, max_size=8)),
        kind=kind,
        type=draw(st.text(min_size=1, max_size=8)),
        occurred_at=draw(times),
        received_at=draw(times),
        workspace="w",
        id="0192-id",
        latency_ms=draw(tokens),
        customer_id=draw(text),
        provider=draw(text),
        response_model=draw(text),
        input_tokens=draw(tokens),
        output_tokens=draw(tokens),
        total_tokens=draw(tokens),
        cache_read_tokens=draw(tokens),
        cost_usd=draw(money),
        reported_cost_usd=draw(money),
        cost_source=draw(st.sampled_from(["computed", "reported", "unknown", "none"])),
        product=draw(products),
        meter=draw(text),
        quantity=draw(quantity),
        conversation_id=draw(text),
        tags=draw(st.lists(st.text(max_size=5), max_size=3)),
        meta=draw(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3)),
        query=draw(text),
    )


def sql_items(rows: list[tuple[Any, ...]]) -> list[str | None]:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE records ({', '.join(f'{c} {column_type(c)}' for c in COLUMNS)})")
    conn.executemany(f"INSERT INTO records VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    return [row[0] for row in conn.execute(f"SELECT {ITEM_JSON} FROM records ORDER BY rowid")]


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=5))
# SQLite-only: item JSON built by SQLite's JSON functions (PostgreSQL's come from item_of).
def test_sql_item_equals_item_json(batch: list[UsageRecord]) -> None:
    rows = [record_to_row(r) for r in batch]
    for row, built in zip(rows, sql_items(rows), strict=True):
        expected = json.loads(json.dumps(item_json(row_to_record(row))))
        if built is None:  # left to item_json: only for what SQL cannot format exactly
            record = row_to_record(row)
            assert record.occurred_at < 0 or record.received_at < 0 or (
                record.quantity is not None and not str(record.quantity).replace(".", "").isdigit()
            )
            continue
        assert json.loads(built) == expected
        assert UsageItem.model_validate(json.loads(built)).model_dump(mode="json", by_alias=True, exclude_none=True) == expected


# SQLite-only: item JSON built by SQLite's JSON functions (PostgreSQL's come from item_of).
def test_plain_values_are_built_by_sql() -> None:
    record = UsageRecord(idempotency_key="k", kind="meter", type="pages", occurred_at=1_763_900_000_123_456_789,
                         received_at=1_763_900_001_000_000_000, quantity=Decimal("2.50"), cost_usd=Decimal("0.00024"),
                         meta={"plan": "pro"}, tags=["a"], product=Product(id="p1"))
    [built] = sql_items([record_to_row(record)])
    assert built is not None
    assert json.loads(built) == {
        "id": "", "idempotencyKey": "k", "workspace": "default", "kind": "meter", "type": "pages", "count": 2.5,
        "occurredAt": "2025-11-23T12:13:20.123456Z", "createdAt": "2025-11-23T12:13:21.000000Z",
        "updatedAt": "2025-11-23T12:13:21.000000Z", "costUsd": "0.00024", "costSource": "none", "status": "success",
        "product": {"id": "p1"}, "quantity": "2.5", "tags": ["a"], "meta": {"plan": "pro"},
    }
