"""GET /api/v1/usage/series and /snapshot: 90 zero-filled UTC days, day boundaries, time zones."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from tests.api.conftest import DAY_NS, Api, record

SERIES = "/api/v1/usage/series"
SNAPSHOT = "/api/v1/usage/snapshot"
NS = 1_000_000_000


def test_ninety_zero_filled_days_with_totals_per_utc_day(api: Api) -> None:
    today = time.time_ns() // DAY_NS
    midnight = today * DAY_NS  # today 00:00Z
    records = [
        # 130 days of one call a day at noon: more than the window holds.
        *(
            record(f"noon-{d}", occurred_at=midnight - d * DAY_NS + 12 * 3600 * NS, total_tokens=1)
            for d in range(130)
        ),
        # Around the midnight that starts day -10: the last nanosecond before it, and the first in it.
        record("before", occurred_at=midnight - 10 * DAY_NS - 1, total_tokens=1000),
        record("at", occurred_at=midnight - 10 * DAY_NS, total_tokens=20_000),
        # A client in UTC-05:00 at 21:30 local on day -5 is 02:30Z on day -4.
        record("new-york", occurred_at=_ns(_local(today - 5, 21, 30, -5)), total_tokens=300_000),
        # A client in UTC+09:00 at 07:00 local on day -3 is 22:00Z on day -4.
        record("tokyo", occurred_at=_ns(_local(today - 3, 7, 0, 9)), total_tokens=4_000_000),
        # Not tokens: events and meters count in neither tokens nor messages.
        record("event", kind="event", type="SIGNUP", occurred_at=midnight + 1),
        record("meter", kind="meter", type="pages", occurred_at=midnight + 1),
        # Cost in nano-USD resolution.
        record(
            "priced",
            occurred_at=midnight + 2,
            total_tokens=0,
            cost_usd=Decimal("0.000001"),
            cost_source="computed",
        ),
    ]
    api.write(records)
    series = api.get(SERIES).json()
    assert set(series) == {"tokens", "conversations", "messages", "cost"}
    for name in series:
        points = series[name]
        assert len(points) == 90
        assert [p["timestamp"] for p in points] == [(today - 89 + i) * 86_400_000 for i in range(90)]
    tokens = {p["timestamp"] // 86_400_000 - today: p["total"] for p in series["tokens"]}
    messages = {p["timestamp"] // 86_400_000 - today: p["total"] for p in series["messages"]}
    assert tokens[-89] == 1 and tokens[-50] == 1 and tokens[0] == 1
    assert tokens[-11] == 1 + 1000  # the last nanosecond of day -11
    assert tokens[-10] == 1 + 20_000  # midnight belongs to the day it starts
    assert tokens[-4] == 1 + 300_000 + 4_000_000  # both non-UTC clients land on UTC day -4
    assert tokens[-5] == 1 and tokens[-3] == 1
    assert messages[0] == 2 and messages[-4] == 3 and messages[-10] == 2
    assert sum(tokens.values()) == 90 + 1000 + 20_000 + 300_000 + 4_000_000
    costs = {p["timestamp"] // 86_400_000 - today: p["total"] for p in series["cost"]}
    assert costs[0] == "0.000001" and costs[-1] == "0"


def test_conversations_count_on_the_day_they_start(api: Api) -> None:
    midnight = time.time_ns() // DAY_NS * DAY_NS
    api.write([
        record("a1", conversation_id="a", occurred_at=midnight - 2 * DAY_NS + 5),
        record("a2", conversation_id="a", occurred_at=midnight - DAY_NS + 5),  # same conversation, next day
        record("b1", conversation_id="b", occurred_at=midnight - DAY_NS + 6),
        record("c1", conversation_id="c", occurred_at=midnight - 200 * DAY_NS),  # started before the window
        record("c2", conversation_id="c", occurred_at=midnight + 7),
        record("x1", occurred_at=midnight + 8),  # no conversation
    ])  # fmt: skip
    conversations = [p["total"] for p in api.get(SERIES).json()["conversations"]]
    assert conversations[-3:] == [1, 1, 0]
    assert sum(conversations) == 2


def test_customer_filter(api: Api) -> None:
    now = time.time_ns()
    api.write([
        record("acme", customer_id="acme", total_tokens=5, occurred_at=now),
        record("globex", customer_id="globex", total_tokens=7, occurred_at=now),
    ])  # fmt: skip
    assert api.get(SERIES, customer="acme").json()["tokens"][-1]["total"] == 5
    assert api.get(SERIES).json()["tokens"][-1]["total"] == 12
    assert api.get(SNAPSHOT, customer="globex").json()["tokens"] == 7


def test_snapshot_is_the_current_calendar_month(api: Api) -> None:
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start_ns = _ns(month_start)
    api.write([
        record("last-month", occurred_at=start_ns - 1, total_tokens=999, cost_usd=Decimal(9), cost_source="computed"),
        record("first-ns", occurred_at=start_ns, input_tokens=10, output_tokens=5, conversation_id="c1",
               cost_usd=Decimal("0.25"), cost_source="computed"),
        record("later", occurred_at=start_ns + 1, input_tokens=1, output_tokens=1, conversation_id="c1",
               cost_usd=Decimal("0.5"), cost_source="computed"),
        record("event", kind="event", type="SIGNUP", occurred_at=start_ns + 2),
        record("meter", kind="meter", type="pages", occurred_at=start_ns + 3),
        record("meter-2", kind="meter", type="pages", occurred_at=start_ns + 4, quantity=Decimal("0.1")),
        record("meter-3", kind="meter", type="gpu_seconds", occurred_at=start_ns + 5, quantity=Decimal("2.50")),
        record("meter-old", kind="meter", type="gpu_seconds", occurred_at=start_ns - 1, quantity=Decimal(7)),
    ])  # fmt: skip
    snapshot = api.get(SNAPSHOT).json()
    assert snapshot["periodStart"] == month_start.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert snapshot["periodEnd"] > snapshot["periodStart"]
    assert snapshot["tokens"] == 17 and snapshot["inputTokens"] == 11 and snapshot["outputTokens"] == 6
    assert snapshot["messages"] == 2 and snapshot["conversations"] == 1
    assert snapshot["events"] == 1 and snapshot["meterRecords"] == 3
    assert snapshot["meters"] == {"gpu_seconds": "2.5", "pages": "1.1"}  # each meter's quantity, exact
    assert snapshot["cost"] == "0.75"


def _local(day: int, hour: int, minute: int, offset_hours: int) -> datetime:
    """Local wall-clock time `hour:minute` on the UTC calendar date of `day`, at a UTC offset."""
    date = datetime(1970, 1, 1) + timedelta(days=day)
    return datetime(
        date.year, date.month, date.day, hour, minute, tzinfo=timezone(timedelta(hours=offset_hours))
    )


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * NS + when.microsecond * 1000
