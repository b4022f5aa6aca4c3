"""The proto is the source of truth: the committed generated code is fresh, and the Python record
and the SQL schema have exactly its fields."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

from spanmeter._proto.spanmeter.v1 import usage_pb2
from spanmeter.record import RECORD_FIELDS, Product, UsageRecord, new_record_id
from spanmeter.store.schema import COLUMNS, PRODUCT_COLUMNS, record_to_row, row_to_record
from spanmeter.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("usage_pb2.py", "usage_pb2.pyi"):
        fresh = (tmp_path / "spanmeter" / "v1" / name).read_text()
        committed = (ROOT / "src" / "spanmeter" / "_proto" / "spanmeter" / "v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: run python scripts/gen_proto.py"


def test_record_fields_match_the_proto() -> None:
    proto_fields = {f.name for f in usage_pb2.UsageRecord.DESCRIPTOR.fields}
    assert set(RECORD_FIELDS) == proto_fields
    product_fields = [f.name for f in usage_pb2.Product.DESCRIPTOR.fields]
    assert list(Product.__dataclass_fields__) == product_fields


# SQLite-only: SQLite's table_info (PostgreSQL's records table is made from the same COLUMNS).
def test_sql_columns_match_the_proto(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    with sqlite3.connect(tmp_path / "x.db") as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    expected = {f.name for f in usage_pb2.UsageRecord.DESCRIPTOR.fields} - {"cost_usd", "reported_cost_usd", "product"}
    expected |= {"cost_usd_nano", "reported_cost_usd_nano", *PRODUCT_COLUMNS}
    assert columns == expected | {"seq", "key_hash"}  # the store's own: insertion order, key uniqueness
    assert set(COLUMNS) == expected


def test_row_round_trip_keeps_every_field() -> None:
    record = UsageRecord(
        idempotency_key="k", kind="llm", type="chat", occurred_at=1, workspace="w", id="i", received_at=2,
        latency_ms=3, customer_id="c", user_id="u", email="e", account_domain="d", provider="p",
        request_model="rm", response_model="sm", operation="chat", input_tokens=4, output_tokens=5,
        total_tokens=9, cache_read_tokens=1, cache_write_tokens=2, reasoning_tokens=3,
        cost_usd=Decimal("0.000000123"), cost_source="computed", price_ref="ref",
        reported_cost_usd=Decimal("1.5"), status="error", error_type="429", event_name="en",
        event_family="activation", product=Product("pi", "pn", "pt", "pv", "pc"), source="sdk",
        campaign_id="camp", meter="m", quantity=Decimal("2.50"), conversation_id="cv", message_id="mi",
        task_id="t", contact_id="ct", blueprint_id="b", bot_id="bo", dataset_id="ds", skillset_id="sk",
        ability_id="ab", feature="f", tags=["a", "b"], trace_id="tr", span_id="sp", service_name="svc",
        meta={"k": "v"}, query="q",
    )
    assert all(getattr(record, name) not in (None, "", [], {}) for name in RECORD_FIELDS)
    assert row_to_record(record_to_row(record)) == record


def test_money_is_shown_as_plain_decimal_strings() -> None:
    record = UsageRecord(idempotency_key="k", kind="llm", type="chat", occurred_at=0,
                         cost_usd=Decimal("2.4E-7"), quantity=Decimal("1E+3"))
    assert record.to_dict()["cost_usd"] == "0.00000024"
    assert record.to_dict()["quantity"] == "1000"


def test_record_ids_are_uuidv7_in_order_one_at_a_time_or_many() -> None:
    # More ids than the 12-bit counter holds in one millisecond: order must survive the rollover.
    ids = [new_record_id(), *new_record_id.many(5000), new_record_id()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert abs((parsed[0].int >> 80) - time.time() * 1000) < 60_000  # the first 48 bits: now, in ms
