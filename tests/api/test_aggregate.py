"""GET /api/v1/usage/aggregate: every metric and group-by against a direct computation over the
records, windows at day boundaries in two time zones, rollups vs records, workspace isolation,
400s that name the parameter."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from spanmeter.record import UsageRecord, decimal_string, format_ns
from tests.api.conftest import DAY_NS, Api, record

AGGREGATE = "/api/v1/usage/aggregate"
NS = 1_000_000_000
METRICS = (
    "cost",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "records",
    "quantity",
    "distinct_users",
    "distinct_conversations",
)


def mixed_records(seed: int = 7, n: int = 240) -> list[UsageRecord]:
    """LLM calls, events and meters over the last 40 days, across customers (some without one),
    providers, models, meta plans, users and conversations, with exact costs and quantities."""
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for i in range(n):
        when = now - rng.randrange(40 * DAY_NS)
        customer = rng.choice(["acme", "globex", "initech", None])
        meta = {"plan": rng.choice(["pro", "free"])} if rng.random() < 0.8 else {}
        common: dict[str, Any] = {
            "occurred_at": when,
            "customer_id": customer,
            "user_id": rng.choice(["u1", "u2", "u3", None]),
            "conversation_id": rng.choice(["c1", "c2", "c3", "c4", None]),
            "meta": meta,
        }
        kind = rng.choice(["llm", "llm", "llm", "event", "meter"])
        if kind == "llm":
            provider, model = rng.choice(
                [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude")]
            )
            given_total = rng.random() < 0.7
            out.append(
                record(
                    f"llm-{i}",
                    provider=provider,
                    response_model=model if rng.random() < 0.9 else None,
                    request_model=model,
                    input_tokens=rng.randrange(1, 5000),
                    output_tokens=rng.randrange(0, 900),
                    **({} if given_total else {"total_tokens": None}),
                    cost_usd=Decimal(rng.randrange(1, 10**7)).scaleb(-9),
                    cost_source="computed",
                    **common,
                )
            )
        elif kind == "event":
            out.append(record(f"event-{i}", kind="event", type=rng.choice(["signup", "export"]), **common))
        else:
            out.append(
                record(
                    f"meter-{i}",
                    kind="meter",
                    type=rng.choice(["pages", "seats"]),
                    quantity=Decimal(rng.randrange(1, 400)).scaleb(-rng.randrange(0, 3)),
                    **common,
                )
            )
    return out


# --- the direct computation -----------------------------------------------------------------------
def _dimension(r: UsageRecord, name: str) -> str | None:
    if name.startswith("meta."):
        return r.meta.get(name[5:])
    return {
        "customer": r.customer_id,
        "provider": r.provider,
        "model": r.response_model or r.request_model,
        "kind": r.kind,
        "type": r.type,
        "meter": r.meter,
    }[name]


def _window(r: UsageRecord, window: str, tz: ZoneInfo) -> tuple[str | None, str | None]:
    local = datetime.fromtimestamp(r.occurred_at // NS, tz)
    if window == "none":
        return None, None
    if window == "hour":
        start = local.replace(minute=0, second=0)
        end = start.astimezone(UTC) + timedelta(hours=1)
    elif window == "day":
        start = datetime(local.year, local.month, local.day, tzinfo=tz)
        following = local.date() + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=tz)
    else:
        start = datetime(local.year, local.month, 1, tzinfo=tz)
        end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=tz)
    return (format_ns(int(start.timestamp()) * NS), format_ns(int(end.timestamp()) * NS))


def expected(
    records: list[UsageRecord], metrics: tuple[str, ...], group_by: tuple[str, ...], window: str, tz: str
) -> list[dict[str, Any]]:
    zone = ZoneInfo(tz)
    cells: dict[tuple[Any, ...], list[UsageRecord]] = defaultdict(list)
    for r in records:
        start, end = _window(r, window, zone)
        cells[(start or "", end, tuple(_dimension(r, g) for g in group_by))].append(r)
    rows = []
    for (start, end, group), members in cells.items():
        llm = [r for r in members if r.kind == "llm"]
        totals: dict[str, Any] = {
            "cost": decimal_string(sum((r.cost_usd or Decimal(0) for r in members), Decimal(0))),
            "input_tokens": sum(r.input_tokens or 0 for r in llm),
            "output_tokens": sum(r.output_tokens or 0 for r in llm),
            "total_tokens": sum(
                r.total_tokens
                if r.total_tokens is not None
                else (r.input_tokens or 0) + (r.output_tokens or 0)
                for r in llm
            ),
            "records": len(members),
            "quantity": decimal_string(
                sum((r.quantity or Decimal(0) for r in members if r.kind == "meter"), Decimal(0))
            ),
            "distinct_users": len({r.user_id for r in members if r.user_id is not None}),
            "distinct_conversations": len(
                {r.conversation_id for r in members if r.conversation_id is not None}
            ),
        }
        rows.append(
            {
                "windowStart": start or None,
                "windowEnd": end,
                "group": dict(zip(group_by, group, strict=True)),
                "values": {m: totals[m] for m in metrics},
            }
        )
    return sorted(rows, key=_order)


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["windowStart"] or "", tuple((v is not None, v or "") for v in row["group"].values()))


def aggregate(api: Api, key: str | None = None, **params: Any) -> dict[str, Any]:
    response = api.get(AGGREGATE, key, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- tests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("group_by", "window", "tz"),
    [
        ((), "none", "UTC"),
        (("customer",), "none", "UTC"),
        (("provider",), "day", "UTC"),
        (("model",), "month", "UTC"),
        (("kind", "type"), "day", "America/New_York"),
        (("meter",), "none", "UTC"),
        (("meta.plan",), "day", "Asia/Kolkata"),
        (("customer", "model"), "hour", "Asia/Kolkata"),
        (("customer",), "day", "UTC"),
        (("customer",), "month", "UTC"),
        ((), "day", "UTC"),
    ],
)
def test_every_metric_matches_a_direct_computation(
    api: Api, group_by: tuple[str, ...], window: str, tz: str
) -> None:
    records = mixed_records()
    api.write(records)
    body = aggregate(api, metric=",".join(METRICS), group_by=",".join(group_by), window=window, tz=tz)
    assert body["rows"] == expected(records, METRICS, group_by, window, tz)
    assert body["metrics"] == list(METRICS) and body["groupBy"] == list(group_by)
    assert body["window"] == window and body["tz"] == tz and body["source"] == "records"


@pytest.mark.parametrize(
    ("params", "group_by", "window"),
    [
        ({"group_by": "customer", "window": "day"}, ("customer",), "day"),  # records without a customer too
        ({"group_by": "customer", "window": "month"}, ("customer",), "month"),
        ({"window": "none"}, (), "none"),
        ({"window": "day", "tz": "America/New_York"}, (), "none"),  # tz of no window does not matter
    ],
)
def test_rollup_answers_equal_the_records(
    api: Api, params: dict[str, str], group_by: tuple[str, ...], window: str
) -> None:
    records = mixed_records(seed=11)
    api.write(records)
    metrics = ("cost", "input_tokens", "output_tokens", "total_tokens", "records")
    if params.get("tz"):  # a day in New York is not a UTC day: the records answer
        body = aggregate(api, metric=",".join(metrics), **params)
        assert body["source"] == "records"
        assert body["rows"] == expected(records, metrics, (), "day", "America/New_York")
        body = aggregate(api, metric=",".join(metrics), window="none", tz="America/New_York")
        assert body["source"] == "rollup"
        assert body["rows"] == expected(records, metrics, (), "none", "UTC")
        return
    body = aggregate(api, metric=",".join(metrics), **params)
    assert body["source"] == "rollup"
    assert body["rows"] == expected(records, metrics, group_by, window, "UTC")
    # The same question made to need the records (a distinct count) gives the same numbers.
    forced = aggregate(api, metric=",".join((*metrics, "distinct_users")), **params)
    assert forced["source"] == "records"
    assert [{**row, "values": {m: row["values"][m] for m in metrics}} for row in forced["rows"]] == body[
        "rows"
    ]


@pytest.mark.parametrize(
    ("params", "group_by", "window", "where"),
    [
        ({"group_by": "model", "window": "day"}, ("model",), "day", {}),
        ({"group_by": "model", "kind": "llm"}, ("model",), "none", {"kind": "llm"}),  # the dashboard's top models
        ({"group_by": "provider,kind", "window": "month"}, ("provider", "kind"), "month", {}),
        ({"group_by": "kind", "provider": "openai", "window": "day"}, ("kind",), "day", {"provider": "openai"}),
        ({"kind": "event", "window": "day"}, (), "day", {"kind": "event"}),
    ],
)
def test_model_rollup_answers_equal_the_records(
    api: Api, params: dict[str, str], group_by: tuple[str, ...], window: str, where: dict[str, str],
) -> None:
    records = mixed_records(seed=13)
    api.write(records)
    metrics = ("cost", "input_tokens", "output_tokens", "total_tokens", "records")
    chosen = [r for r in records if all(getattr(r, name) == value for name, value in where.items())]
    body = aggregate(api, metric=",".join(metrics), **params)
    assert body["source"] == "rollup"
    assert body["rows"] == expected(chosen, metrics, group_by, window, "UTC")
    forced = aggregate(api, metric=",".join((*metrics, "distinct_users")), **params)
    assert forced["source"] == "records"
    assert [{**row, "values": {m: row["values"][m] for m in metrics}} for row in forced["rows"]] == body[
        "rows"
    ]


def test_a_tag_filter_is_answered_from_the_records(api: Api) -> None:
    """The rollups hold no tags: a tag narrows the rows as it narrows a records page."""
    today = time.time_ns() // DAY_NS * DAY_NS
    api.write([
        record("t1", customer_id="acme", occurred_at=today + 1, tags=["beta"], cost_usd=Decimal("1.5"), cost_source="computed"),
        record("t2", customer_id="acme", occurred_at=today + 2, cost_usd=Decimal(2), cost_source="computed"),
        record("t3", customer_id="globex", occurred_at=today + 3, tags=["beta", "x"], cost_usd=Decimal(3), cost_source="computed"),
    ])  # fmt: skip
    for group_by in ("customer", "model"):
        body = aggregate(api, metric="cost,records", group_by=group_by, tag="beta")
        assert body["source"] == "records"
        assert sum(int(row["values"]["records"]) for row in body["rows"]) == 2
        assert sorted(row["values"]["cost"] for row in body["rows"]) == (["1.5", "3"] if group_by == "customer" else ["4.5"])


def test_filters_and_from_to_narrow_like_the_records_endpoint(api: Api) -> None:
    records = mixed_records(seed=3)
    api.write(records)
    today = time.time_ns() // DAY_NS * DAY_NS
    start, end = today - 20 * DAY_NS, today - 5 * DAY_NS
    in_range = [r for r in records if start <= r.occurred_at < end]
    params = {
        "from": format_ns(start),
        "to": format_ns(end),
        "metric": "cost,records",
        "group_by": "customer",
        "window": "day",
    }
    body = aggregate(api, **params)
    assert body["source"] == "rollup"  # whole UTC days, customer only
    assert body["rows"] == expected(in_range, ("cost", "records"), ("customer",), "day", "UTC")
    narrowed = aggregate(api, **params, customer="acme", provider="openai", **{"meta[plan]": "pro"})
    chosen = [
        r
        for r in in_range
        if r.customer_id == "acme" and r.provider == "openai" and r.meta.get("plan") == "pro"
    ]
    assert narrowed["source"] == "records"
    assert narrowed["rows"] == expected(chosen, ("cost", "records"), ("customer",), "day", "UTC")
    by_model = aggregate(api, metric="records", model="gpt-4o", kind="llm")
    assert by_model["rows"][0]["values"]["records"] == sum(
        1 for r in records if "gpt-4o" in (r.response_model, r.request_model)
    )


def _at(tz: str, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=ZoneInfo(tz)).timestamp()) * NS  # type: ignore[misc]


def test_day_windows_follow_local_midnight_in_two_time_zones(api: Api) -> None:
    # New York changes to daylight time on 2026-03-08 (a 23-hour day); Tokyo has no daylight time.
    api.write([
        record("ny-before-midnight", occurred_at=_at("America/New_York", 2026, 3, 7, 23, 59, 59) + NS - 1),
        record("ny-midnight", occurred_at=_at("America/New_York", 2026, 3, 8, 0, 0, 0)),
        record("ny-late-on-short-day", occurred_at=_at("America/New_York", 2026, 3, 8, 23, 30, 0)),
        record("ny-next-midnight", occurred_at=_at("America/New_York", 2026, 3, 9, 0, 0, 0)),
        record("tokyo-early", occurred_at=_at("Asia/Tokyo", 2026, 3, 9, 8, 59, 59)),  # 23:59:59Z on the 8th
        record("tokyo-nine", occurred_at=_at("Asia/Tokyo", 2026, 3, 9, 9, 0, 0)),  # 00:00Z on the 9th
    ])  # fmt: skip
    window = {
        "metric": "records",
        "window": "day",
        "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-20T00:00:00Z",
    }
    new_york = aggregate(api, **window, tz="America/New_York")["rows"]
    assert [(r["windowStart"], r["windowEnd"], r["values"]["records"]) for r in new_york] == [
        ("2026-03-07T05:00:00.000000Z", "2026-03-08T05:00:00.000000Z", 1),
        ("2026-03-08T05:00:00.000000Z", "2026-03-09T04:00:00.000000Z", 4),  # 23 hours
        ("2026-03-09T04:00:00.000000Z", "2026-03-10T04:00:00.000000Z", 1),
    ]
    tokyo = aggregate(api, **window, tz="Asia/Tokyo")["rows"]
    assert [(r["windowStart"], r["values"]["records"]) for r in tokyo] == [
        ("2026-03-07T15:00:00.000000Z", 2),  # both New York times around its midnight: the 8th's afternoon
        ("2026-03-08T15:00:00.000000Z", 4),  # 08:59:59 and 09:00 on the 9th in Tokyo, and New York's last two
    ]
    utc = aggregate(api, **window)
    assert utc["source"] == "rollup"
    assert [(r["windowStart"], r["values"]["records"]) for r in utc["rows"]] == [
        ("2026-03-08T00:00:00.000000Z", 3),  # 23:59:59Z (08:59:59 in Tokyo) is still the 8th
        ("2026-03-09T00:00:00.000000Z", 3),
    ]
    hours = aggregate(api, metric="records", window="hour", tz="Asia/Kolkata", customer="none-such")
    assert hours["rows"] == []


def test_each_workspace_sees_only_its_own_usage(auth_api: Api) -> None:
    mine, _ = auth_api.key("team-a", ("read",))
    theirs, _ = auth_api.key("team-b", ("read",))
    auth_api.write([
        record("a1", workspace="team-a", customer_id="shared-name", cost_usd=Decimal("1.5"), cost_source="computed"),
        record("b1", workspace="team-b", customer_id="shared-name", cost_usd=Decimal(7), cost_source="computed"),
        record("b2", workspace="team-b", customer_id="other", cost_usd=Decimal(2), cost_source="computed"),
    ])  # fmt: skip
    for window, source in (("none", "rollup"), ("hour", "records")):
        a = aggregate(auth_api, mine, group_by="customer", window=window)
        assert a["source"] == source
        assert [(r["group"]["customer"], r["values"]["cost"]) for r in a["rows"]] == [("shared-name", "1.5")]
        b = aggregate(auth_api, theirs, group_by="customer", window=window)
        assert [(r["group"]["customer"], r["values"]["cost"]) for r in b["rows"]] == [
            ("other", "2"),
            ("shared-name", "7"),
        ]
    assert auth_api.get(AGGREGATE).status_code == 401


def test_an_empty_workspace_has_no_rows(api: Api) -> None:
    for window in ("none", "day", "hour", "month"):
        assert aggregate(api, window=window, metric="cost,distinct_users")["rows"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metric": "dollars"}, "metric: unknown metric 'dollars'"),
        ({"metric": ","}, "metric: give one or more of cost"),
        ({"metric": "cost,cost"}, "metric: 'cost' given twice"),
        ({"group_by": "planet"}, "group_by: unknown dimension 'planet'"),
        ({"group_by": "meta."}, "group_by: 'meta.' needs a meta key"),
        ({"group_by": 'meta.a"b'}, "group_by: 'meta.a\"b' needs a meta key"),
        ({"group_by": "customer,model,kind,type,meter"}, "group_by: at most 4 dimensions"),
        ({"window": "week"}, "window: Input should be 'hour', 'day', 'month' or 'none'"),
        ({"tz": "Mars/Olympus"}, "tz: unknown time zone 'Mars/Olympus'"),
        ({"tz": "../etc/passwd"}, "tz: unknown time zone"),
        ({"from": "yesterday"}, "from: Input should be a valid datetime"),
        ({"from": "2026-02-01T00:00Z", "to": "2026-01-01T00:00Z"}, "from: must be earlier than to"),
        ({"kind": "span"}, "kind: Input should be 'llm', 'event' or 'meter'"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api: Api, params: dict[str, str], message: str) -> None:
    response = api.get(AGGREGATE, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["ok"] is False and body["error"].startswith(message), body


def test_documented_in_openapi(api: Api) -> None:
    operation = api.get("/openapi.json").json()["paths"][AGGREGATE]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"metric", "group_by", "window", "tz", "from", "to", "customer", "meta", "conversationId"} <= names
    assert "200" in operation["responses"] and "400" in operation["responses"]
