"""Meter queries (`GET /api/v1/usage/aggregate`): what may be asked, and windows in a time zone.

Backend-neutral: the metrics and dimensions a query names, the query and its rows, and the time
arithmetic that turns a window key computed by the database back into a window's start and end.

A window belongs to the caller's time zone: a `day` in America/New_York is its local midnight to
the next (23 or 25 hours at a daylight-saving change). The database computes each record's
window key from its `occurredAt` plus the zone's UTC offset at that instant; the offsets come
from `offset_periods`, a short list (two changes a year in zones with daylight saving).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo

from spanmeter.store.queries import RecordQuery

NS: Final = 1_000_000_000
HOUR_NS: Final = 3600 * NS

# metric name -> what it sums or counts (the docs' table says the same in words)
METRICS: Final = (
    "cost",  # USD of all records, exact
    "input_tokens",  # of LLM records
    "output_tokens",  # of LLM records
    "total_tokens",  # of LLM records: total when given, else input + output
    "records",
    "quantity",  # of meter records, exact
    "distinct_users",  # distinct user ids
    "distinct_conversations",  # distinct conversation ids
)
DIMENSIONS: Final = ("customer", "provider", "model", "kind", "type", "meter")  # and meta.KEY
META_PREFIX: Final = "meta."
Window = Literal["hour", "day", "month", "none"]
WINDOWS: Final = ("hour", "day", "month", "none")
Source = Literal["rollup", "records"]


@dataclass(slots=True, frozen=True)
class AggregateQuery:
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    where: RecordQuery  # workspace and the records endpoint's filters (order, limit, cursor unused)
    window: Window = "none"
    tz: str = "UTC"
    max_rows: int = 100_000
    # The caller wants the rows as the API's JSON (AggregateResult.rows_json) where the store
    # can build it itself; it may still answer with `rows`.
    as_json: bool = False


@dataclass(slots=True)
class AggregateRow:
    window_start: int | None  # ns, UTC; None without a window
    window_end: int | None
    group: tuple[str | None, ...]  # in group_by order
    # each metric's value: integers; `cost` in nano-USD (as stored), `quantity` an exact Decimal
    values: dict[str, int | Decimal] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class AggregateResult:
    rows: list[AggregateRow]
    source: Source  # "rollup": the daily rollups; "records": the records themselves
    # With AggregateQuery.as_json: the rows as the API writes them (JSON objects joined by
    # commas, b'' for none, UTF-8), built by the store, instead of `rows` (then empty).
    rows_json: bytes | None = None


class TooManyRows(ValueError):
    """The answer would exceed AggregateQuery.max_rows."""


def metrics_from(text: str) -> tuple[str, ...]:
    """Metric names from comma-separated text; ValueError saying what is wrong."""
    names = _names(text)
    if not names:
        raise ValueError(f"give one or more of {', '.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name[:40]!r}; use one or more of {', '.join(METRICS)}")
    return names


def group_by_from(text: str, most: int) -> tuple[str, ...]:
    """Dimensions from comma-separated text (at most `most`); ValueError saying what is wrong."""
    names = _names(text)
    if len(names) > most:
        raise ValueError(f"at most {most} dimensions")
    for name in names:
        if name.startswith(META_PREFIX):
            key = name[len(META_PREFIX) :]
            if not key or '"' in key or "\\" in key:
                raise ValueError(f"{name[:40]!r} needs a meta key without quotes or backslashes")
        elif name not in DIMENSIONS:
            raise ValueError(f"unknown dimension {name[:40]!r}; use {', '.join(DIMENSIONS)} or meta.KEY")
    return names


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{name[:40]!r} given twice")
    return names


def window_start(tz: ZoneInfo, window: Window, ns: int) -> int:
    """The start (UTC ns) of the window of `tz` that holds `ns`; `ns` itself for window none."""
    local = datetime.fromtimestamp(ns // NS, tz)
    if window == "hour":
        return int(local.replace(minute=0, second=0).timestamp()) * NS
    if window == "day":
        return _ns(datetime(local.year, local.month, local.day, tzinfo=tz))
    if window == "month":
        return _ns(datetime(local.year, local.month, 1, tzinfo=tz))
    return ns


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError if there is none."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found is a KeyError; a malformed name ValueError
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def is_utc(tz: str) -> bool:
    return tz in ("UTC", "Etc/UTC", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu", "GMT", "Etc/GMT")


def offset_periods(tz: ZoneInfo, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """[(from_ns, offset_ns), ...]: the zone's UTC offset in force from each time on, the first at
    `start_ns`, over [start_ns, end_ns). Found by stepping a day at a time (zones change offset at
    most a few times a year) and bisecting each change to the second."""

    def offset(seconds: int) -> int:
        found = datetime.fromtimestamp(seconds, UTC).astimezone(tz).utcoffset()
        return int((found or timedelta()).total_seconds())

    start, end = start_ns // NS, -(-end_ns // NS)
    periods = [(start_ns, offset(start) * NS)]
    previous, seconds = start, start + 86_400
    while previous < end:
        seconds = min(seconds, end)
        if offset(seconds) != periods[-1][1] // NS:
            low, high = previous, seconds  # offset(low) is the old one, offset(high) the new
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == periods[-1][1] // NS:
                    low = middle
                else:
                    high = middle
            periods.append((high * NS, offset(high) * NS))
        previous, seconds = seconds, seconds + 86_400
    return periods


def local_day_start(tz: ZoneInfo, day: int) -> int:
    """UTC ns of the start of local day `day` (days since 1970-01-01, local calendar)."""
    when = date(1970, 1, 1) + timedelta(days=day)
    return _ns(datetime(when.year, when.month, when.day, tzinfo=tz))


def local_month_bounds(tz: ZoneInfo, month: str) -> tuple[int, int]:
    """UTC ns of the start and end of local month 'YYYY-MM'."""
    year, number = int(month[:4]), int(month[5:7])
    following = (year + 1, 1) if number == 12 else (year, number + 1)
    return _ns(datetime(year, number, 1, tzinfo=tz)), _ns(datetime(*following, 1, tzinfo=tz))


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * NS
