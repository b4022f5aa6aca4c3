"""GET /api/v1/usage/records: pagination under concurrent inserts, every filter, meta, bad input."""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from spanmeter.record import Product
from spanmeter.store.queries import RecordQuery
from spanmeter.store.sql.queries import build_page_sql
from spanmeter.store.sqlite.dialect import SQLITE
from tests.api.conftest import Api, record

RECORDS = "/api/v1/usage/records"


def keys_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["idempotencyKey"] for item in response.json()["items"]]


def walk(api: Api, order: str, take: int, between: list[list[str]], **params: Any) -> list[str]:
    """Page through the records; before page i+1, insert the records named in between[i]."""
    seen: list[str] = []
    cursor = None
    page = 0
    while True:
        query = {"order": order, "take": take, **params, **({"cursor": cursor} if cursor else {})}
        response = api.get(RECORDS, **query)
        seen += keys_of(response)
        cursor = response.json()["cursor"]
        if page < len(between):
            api.write([record(k) for k in between[page]])
        page += 1
        if cursor is None:
            return seen


def test_desc_pages_skip_and_repeat_nothing_while_records_arrive(api: Api) -> None:
    first = [f"r{i:02}" for i in range(25)]
    api.write([record(k) for k in first])
    seen = walk(api, "desc", 10, [["new1", "new2"], ["new3"], ["new4"]])
    # Newest first; records inserted after the first page are newer than it, so not on later pages.
    assert seen == list(reversed(first))
    assert keys_of(api.get(RECORDS, take=4)) == ["new4", "new3", "new2", "new1"]


def test_asc_pages_reach_records_inserted_meanwhile_exactly_once(api: Api) -> None:
    first = [f"r{i:02}" for i in range(25)]
    api.write([record(k) for k in first])
    # Pages: r00-r09 | r10-r19 | r20-r24 new1 new2 new3 (the last: new4 comes after it).
    seen = walk(api, "asc", 10, [["new1", "new2"], ["new3"], ["new4"]])
    assert seen == [*first, "new1", "new2", "new3"]
    assert len(set(seen)) == len(seen)


def test_default_order_is_desc_and_default_take_50(api: Api) -> None:
    api.write([record(f"r{i:03}") for i in range(60)])
    page = api.get(RECORDS).json()
    assert len(page["items"]) == 50 and page["cursor"] is not None
    assert page["items"][0]["idempotencyKey"] == "r059"
    assert keys_of(api.get(RECORDS, take=500))[-1] == "r000"
    assert api.get(RECORDS, take=60).json()["cursor"] is None  # exactly the last page


def test_item_fields(api: Api) -> None:
    api.write([
        record("llm", provider="openai", request_model="gpt-4o", response_model="gpt-4o-2024-08-06",
               cost_usd=Decimal("10.00000"), cost_source="computed", conversation_id="c1", message_id="m1",
               task_id="t1", meta={"env": "prod"}, tags=["a"], customer_id="acme"),
        record("meter", kind="meter", type="pages", quantity=Decimal("2.5")),
        record("event", kind="event", type="SIGNUP", product=Product(id="p1", name="Widget")),
        record("llm-no-total", input_tokens=7, output_tokens=5, total_tokens=None),
    ])  # fmt: skip
    items = {item["idempotencyKey"]: item for item in api.get(RECORDS).json()["items"]}
    llm = items["llm"]
    assert llm["type"] == "chat" and llm["kind"] == "llm" and llm["count"] == 120
    assert llm["createdAt"] == llm["updatedAt"] and llm["createdAt"].endswith("Z")
    assert llm["occurredAt"].endswith("Z")
    assert llm["costUsd"] == "10" and llm["costSource"] == "computed"  # exact decimal, never 1E+1
    assert (llm["conversationId"], llm["messageId"], llm["taskId"]) == ("c1", "m1", "t1")
    assert llm["meta"] == {"env": "prod"} and llm["tags"] == ["a"] and llm["customerId"] == "acme"
    assert "botId" not in llm and "reportedCostUsd" not in llm  # absent values are left out
    assert items["meter"]["count"] == 2.5 and items["meter"]["quantity"] == "2.5"
    assert items["event"]["count"] == 1 and items["event"]["product"] == {"id": "p1", "name": "Widget"}
    assert items["event"]["meta"] == {}
    assert items["llm-no-total"]["count"] == 12


FILTERS: dict[str, tuple[str, str]] = {
    # query parameter: (record field, value)
    "type": ("type", "embeddings"),
    "conversationId": ("conversation_id", "conv-1"),
    "messageId": ("message_id", "msg-1"),
    "taskId": ("task_id", "task-1"),
    "contactId": ("contact_id", "contact-1"),
    "blueprintId": ("blueprint_id", "bp-1"),
    "botId": ("bot_id", "bot-1"),
    "datasetId": ("dataset_id", "ds-1"),
    "skillsetId": ("skillset_id", "sk-1"),
    "abilityId": ("ability_id", "ab-1"),
    "customer": ("customer_id", "acme"),
    "provider": ("provider", "anthropic"),
}


@pytest.fixture
def filtered(api: Api) -> Api:
    """For each filter two matching records among others that differ in that field only."""
    records = []
    for param, (field, value) in FILTERS.items():
        for i in range(2):
            records.append(record(f"{param}-{i}", **{field: value}))
        records.append(record(f"{param}-other", **{field: "other"}))
    records += [
        record("meter-0", kind="meter", type="pages"),
        record("event-0", kind="event", type="SIGNUP"),
        record("model-response", response_model="gpt-4o-2024-08-06", request_model="gpt-4o"),
        record("model-request", request_model="gpt-4o-2024-08-06"),
    ]
    api.write(records)
    return api


@pytest.mark.parametrize("param", FILTERS)
def test_every_equality_filter(filtered: Api, param: str) -> None:
    assert sorted(keys_of(filtered.get(RECORDS, **{param: FILTERS[param][1]}))) == [
        f"{param}-0",
        f"{param}-1",
    ]
    assert keys_of(filtered.get(RECORDS, **{param: "nothing"})) == []


def test_kind_and_model_filters(filtered: Api) -> None:
    assert keys_of(filtered.get(RECORDS, kind="meter")) == ["meter-0"]
    assert keys_of(filtered.get(RECORDS, kind="event")) == ["event-0"]
    assert sorted(keys_of(filtered.get(RECORDS, model="gpt-4o-2024-08-06"))) == [
        "model-request",
        "model-response",
    ]
    assert keys_of(filtered.get(RECORDS, model="gpt-4o")) == ["model-response"]


def test_filters_combine(filtered: Api) -> None:
    filtered.write([record("both", customer_id="acme", provider="anthropic")])
    assert keys_of(filtered.get(RECORDS, customer="acme", provider="anthropic")) == ["both"]


def test_from_to_with_offsets(api: Api) -> None:
    base = datetime(2026, 3, 10, tzinfo=UTC)
    ns = lambda d: int(d.timestamp()) * 1_000_000_000
    api.write([record(f"h{h:02}", occurred_at=ns(base + timedelta(hours=h))) for h in range(0, 48, 6)])
    # 2026-03-10T01:00-05:00 is 06:00Z (inclusive); 2026-03-11T00:00+02:00 is 2026-03-10T22:00Z (exclusive).
    found = keys_of(
        api.get(
            RECORDS, order="asc", **{"from": "2026-03-10T01:00:00-05:00", "to": "2026-03-11T00:00:00+02:00"}
        )
    )
    assert found == ["h06", "h12", "h18"]
    assert keys_of(api.get(RECORDS, order="asc", **{"from": "2026-03-11T12:00:00Z"})) == ["h36", "h42"]
    assert keys_of(api.get(RECORDS, order="asc", to="2026-03-10T06:00:00")) == ["h00"]  # naive = UTC


def test_meta_filters(api: Api) -> None:
    api.write([
        record("prod-eu", meta={"env": "prod", "region": "eu"}, customer_id="acme"),
        record("prod-us", meta={"env": "prod", "region": "us"}),
        record("dev-eu", meta={"env": "dev", "region": "eu"}),
        record("odd", meta={"weird key[]": "a=b&c", "env": "prod"}),
        record("none"),
    ])  # fmt: skip
    get = lambda query: sorted(keys_of(api.client.get(f"{RECORDS}?{query}")))
    assert get("meta[env]=prod") == ["odd", "prod-eu", "prod-us"]
    assert get("meta[env]=prod&meta[region]=eu") == ["prod-eu"]
    assert get("meta[region]=eu") == ["dev-eu", "prod-eu"]
    assert get("meta[region]=eu&customer=acme") == ["prod-eu"]
    assert get("meta[env]=staging") == []
    assert get("meta[nokey]=x") == []
    assert sorted(keys_of(api.get(RECORDS, **{"meta[weird key[]]": "a=b&c"}))) == ["odd"]


def test_meta_filter_pages_in_both_orders(api: Api) -> None:
    api.write([record(f"r{i:02}", meta={"env": "prod" if i % 3 else "dev"}) for i in range(30)])
    prod = [f"r{i:02}" for i in range(30) if i % 3]
    assert walk(api, "asc", 7, [["late"]], **{"meta[env]": "prod"}) == prod
    assert walk(api, "desc", 7, [], **{"meta[env]": "prod"}) == list(reversed(prod))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"take": 0}, "take: Input should be greater than or equal to 1"),
        ({"take": 501}, "take: Input should be less than or equal to 500"),
        ({"take": -3}, "take:"),
        ({"take": "ten"}, "take: Input should be a valid integer"),
        ({"order": "newest"}, "order: Input should be 'asc' or 'desc'"),
        ({"cursor": "not-a-cursor"}, "cursor: not a cursor of this API"),
        ({"cursor": "!!!"}, "cursor: not a cursor of this API"),
        ({"from": "yesterday"}, "from: Input should be a valid datetime"),
        ({"kind": "tokens"}, "kind: Input should be 'llm', 'event' or 'meter'"),
    ],
)
def test_invalid_parameters_are_400_with_a_message(api: Api, params: dict[str, Any], message: str) -> None:
    response = api.get(RECORDS, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and body["error"].startswith(message), body


def test_a_repeated_parameter_is_400(api: Api) -> None:
    for path in (RECORDS, "/api/v1/usage/series", "/api/v1/adoption"):
        response = api.client.get(f"{path}?customer=a&customer=b&category=x&category=y")
        assert response.status_code == 400
        assert response.json()["error"] == "category: given more than once; give each parameter once"


def test_a_nul_in_a_parameter_is_400(api: Api) -> None:
    """PostgreSQL refuses a NUL in any text, SQLite would match nothing: a clear 400 on both."""
    api.write([record("r1")])
    for path, query in ((RECORDS, "customer=a%00b"), (RECORDS, "meta[plan]=pro%00"), (RECORDS, "meta[pl%00an]=pro"),
                        ("/api/v1/usage/series", "model=gpt%00"), ("/api/v1/adoption", "category=x%00")):
        response = api.client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.text)
        assert "contains a NUL character (%00); remove it" in response.json()["error"]
    assert api.get(RECORDS).status_code == 200


def test_altered_or_foreign_cursor_is_400(api: Api) -> None:
    api.write([record(f"r{i}") for i in range(5)])
    cursor = api.get(RECORDS, take=2).json()["cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-5] ^= 1  # flip one bit of the payload
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (altered, cursor[:-2], cursor + "AA"):
        response = api.get(RECORDS, take=2, cursor=bad)
        assert response.status_code == 400 and "cursor" in response.json()["error"]
    other_query = api.get(RECORDS, take=2, cursor=cursor, order="asc")
    assert other_query.status_code == 400 and "other filters or another order" in other_query.json()["error"]
    assert api.get(RECORDS, take=3, cursor=cursor).status_code == 200  # a new page size is fine


# SQLite-only: SQLite's EXPLAIN QUERY PLAN.
def test_page_plans_use_indexes() -> None:
    """A page with a customer or meta filter reads an index in seq order: no scan, no sort."""
    import tempfile

    from spanmeter.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(f"{tmp}/plan.db")
        store.migrate()
        conn = sqlite3.connect(f"{tmp}/plan.db")
        for query in (
            RecordQuery("w", after_seq=10),
            RecordQuery("w", equals=(("customer_id", "acme"),), after_seq=10),
            RecordQuery("w", meta=(("env", "prod"),), after_seq=10, order="asc"),
            RecordQuery("w", meta=(("env", "prod"), ("region", "eu")), equals=(("customer_id", "acme"),)),
            RecordQuery("w", equals=(("conversation_id", "c"),)),
            RecordQuery("w", equals=(("customer_id", "acme"),), from_ns=1, to_ns=2),
        ):
            sql, params = build_page_sql(query, dialect=SQLITE)
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
        conn.close()


def test_records_over_a_real_socket(api: Api) -> None:
    api.write([record(f"r{i}", meta={"n": str(i)}) for i in range(3)])
    url = f"{api.running.http_url}{RECORDS}"
    response = httpx.get(url, params={"take": 2, "meta[n]": "1"})
    assert response.status_code == 200 and [i["idempotencyKey"] for i in response.json()["items"]] == ["r1"]
    bad = httpx.get(url, params={"take": 1000})
    assert bad.status_code == 400 and bad.json() == {
        "ok": False,
        "error": "take: Input should be less than or equal to 500",
    }


def test_workspace_is_never_crossed_without_auth(api: Api) -> None:
    api.write([record("mine"), record("theirs", workspace="other")])
    assert keys_of(api.get(RECORDS)) == ["mine"]  # auth off: the configured workspace only


def test_api_items_carry_every_record_field() -> None:
    """UsageItem restates the record for the OpenAPI document; a field added to the proto must
    reach the API too (received_at is shown as createdAt)."""
    from spanmeter.api.models import UsageItem
    from spanmeter.record import RECORD_FIELDS

    assert set(RECORD_FIELDS) - {"received_at"} <= set(UsageItem.model_fields)


def test_items_are_exactly_what_the_documented_model_reads(api: Api) -> None:
    """Items are built without pydantic (speed); UsageItem, the OpenAPI schema, must read each one
    back unchanged: same names, no absent values, nothing the model does not know."""
    from spanmeter.api.models import UsageItem

    api.write([
        record("llm", cost_usd=Decimal("0.000123"), reported_cost_usd=Decimal("0.0001"), cost_source="computed",
               conversation_id="c1", task_id="t1", meta={"env": "prod"}, tags=["a", "b"], customer_id="acme",
               provider="openai", response_model="gpt-4o", latency_ms=12, trace_id="ab" * 16, span_id="cd" * 8),
        record("meter", kind="meter", type="pages", quantity=Decimal("2.5")),
        record("event", kind="event", type="SIGNUP", product=Product(id="p1", name="Widget"), user_id="u1"),
        record("failed", kind="event", type="FAILED", status="error", error_type="timeout"),
    ])
    items = api.get(RECORDS).json()["items"]
    assert len(items) == 4
    for item in items:
        assert UsageItem.model_validate(item).model_dump(mode="json", by_alias=True, exclude_none=True) == item
    by_key = {item["idempotencyKey"]: item for item in items}
    assert by_key["event"]["product"] == {"id": "p1", "name": "Widget"}
    assert by_key["llm"]["costUsd"] == "0.000123" and by_key["llm"]["tags"] == ["a", "b"]
    assert "tags" not in by_key["meter"] and by_key["meter"]["quantity"] == "2.5" and by_key["meter"]["count"] == 2.5


def test_unknown_paths_and_methods_answer_the_documented_error_shape(api: Api) -> None:
    missing = api.get("/api/v1/usage/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error": "no such path: /api/v1/usage/nothing; the API's paths are listed in /openapi.json"}
    wrong = api.client.delete(RECORDS)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
    assert wrong.json() == {"ok": False, "error": f"DELETE is not allowed on {RECORDS}; allowed: GET"}
    otlp = api.get("/v1/traces")  # OTLP paths take POST only
    assert otlp.status_code == 405 and otlp.json()["error"].startswith("GET is not allowed on /v1/traces")
    # No /docs page (it loaded Swagger UI from a CDN: blank offline); the OpenAPI document stays.
    assert api.get("/docs").status_code == 404 and api.get("/redoc").status_code == 404
    assert api.get("/openapi.json").json()["paths"]
