"""Meter query rows from the daily rollups as the API's JSON, built by SQLite itself.

30 days of 2,000 customers by day is ~60,000 rows, ~7 MB of JSON. Read as Python tuples, turned
into row objects and then into JSON, that took ~0.5 s at 1M records (bench/README.md "Query
benchmark"). Here SQLite formats each row in C while it reads the covering index
`usage_daily_by_day` in order, and returns each window's rows joined by commas.

Day windows go one step further: a past day's rows do not change unless a record of that day is
stored, and every stored record adds 1 to the day's record count in the workspace's row of
`usage_daily` (customer ''), which never goes down. So a day's JSON, kept with the count it was
built at, is still exact while that count is unchanged: a call reads the counts of its days (one
row each), and builds only the days whose count moved (usually just today) or that it has not
built before. A cached day can never be stale; the cache only saves work.

The text is the same JSON that api/aggregate.py `render` writes for the same rows (the API tests
and tests/store/test_aggregate_json.py compare the two): times as `format_ns` spells them, cost as
an exact decimal string of its nano-USD, counts as integers, a group's value as a JSON string or
null.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from spanmeter.record import format_ns
from spanmeter.store.aggregate import AggregateQuery
from spanmeter.store.constants import ALL_CUSTOMERS, DAY_NS

# metric -> its value in a usage_daily row
ROLLUP_SUMS: Final = {
    "cost": "cost_nano",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "total_tokens": "tokens",
    "records": "messages + events + meters",
}
_RECORDS: Final = ROLLUP_SUMS["records"]
_DAY_SECONDS: Final = DAY_NS // 1_000_000_000
# Where a row's window goes: a control character, which json_quote never leaves raw in a string.
_WINDOW: Final = "\x01"
CACHE_BYTES: Final = 64 * 1024 * 1024

Fetch = Callable[[str, list[Any]], list[tuple[Any, ...]]]


def _money(column: str) -> str:
    """api/aggregate.py `money`: nano-USD as an exact decimal string, trailing zeros dropped."""
    whole = f"abs({column}) / 1000000000"
    fraction = f"abs({column}) % 1000000000"
    return (
        f"(CASE WHEN {column} < 0 THEN '-' ELSE '' END || CASE WHEN {fraction} = 0 THEN CAST({whole} AS TEXT)"
        f" ELSE rtrim(printf('%d.%09d', {whole}, {fraction}), '0') END)"
    )


def _row_json(query: AggregateQuery) -> str:
    """A row's JSON from columns g (the group value) and m0, m1, ... (the metrics), with _WINDOW
    where its windowStart/windowEnd pair goes."""
    group = "'\"customer\":' || json_quote(g)" if "customer" in query.group_by else "''"
    values = " || ',' || ".join(
        f"'\"{name}\":' || " + (f"'\"' || {_money(f'm{i}')} || '\"'" if name == "cost" else f"CAST(m{i} AS TEXT)")
        for i, name in enumerate(query.metrics)
    ) or "''"
    return f"'{{\"windowStart\":{_WINDOW},\"group\":{{' || {group} || '}},\"values\":{{' || {values} || '}}}}'"


def _window_pair(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return 'null,"windowEnd":null'
    return f'"{format_ns(start)}","windowEnd":"{format_ns(end)}"'


class RollupJSON:
    """Builds meter query answers from usage_daily as JSON; remembers day windows' rows."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._days: OrderedDict[tuple[Any, ...], tuple[int, int, bytes]] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def answer(
        self, conn: sqlite3.Connection, query: AggregateQuery, customer: str | None, bounds: Callable[[Any], tuple[int | None, int | None]]
    ) -> tuple[int, bytes] | None:
        """(rows, their JSON joined by commas) for `query`, one the rollups answer, in one read
        transaction on `conn`; `customer` is its customer filter, if any, and `bounds` turns a
        window key into its (start, end). None if the answer might exceed max_rows (the caller
        counts exactly)."""
        where = query.where
        scope, days = "", []
        if where.from_ns is not None:
            scope += " AND day >= ?"
            days.append(where.from_ns // DAY_NS)
        if where.to_ns is not None:
            scope += " AND day < ?"
            days.append(where.to_ns // DAY_NS)
        fetch: Fetch = lambda sql, params: conn.execute(sql, params).fetchall()
        conn.execute("BEGIN")  # one snapshot for every statement below
        try:
            [(stored,)] = fetch(f"SELECT COUNT(*) FROM usage_daily WHERE workspace = ?{scope}", [where.workspace, *days])
            if stored > query.max_rows:  # an upper bound of the rows (a customer's, or a window's rest)
                return None
            if query.window == "day":
                windows = self._days_json(fetch, query, customer, scope, days, bounds)
            else:
                windows = _with_windows(_grouped(fetch, query, customer, scope, days), bounds)
        finally:
            conn.execute("COMMIT")
        return sum(rows for _, rows, _ in windows), b",".join(text for _, rows, text in windows if rows)

    def _days_json(
        self,
        fetch: Fetch,
        query: AggregateQuery,
        customer: str | None,
        scope: str,
        days: list[int],
        bounds: Callable[[Any], tuple[int | None, int | None]],
    ) -> list[tuple[Any, int, bytes]]:
        """Each day's (day, rows, JSON), from the cache where the day's record count is unchanged."""
        workspace = query.where.workspace
        counts = fetch(
            f"SELECT day, {_RECORDS} FROM usage_daily WHERE workspace = ? AND customer_id = ''{scope} ORDER BY day",
            [workspace, *days],
        )
        shape = (workspace, query.metrics, "customer" in query.group_by, customer)
        with self._lock:
            found = {day: self._days.get((*shape, day)) for day, _ in counts}
        stale = [day for day, count in counts if (found[day] or (None,))[0] != count]
        if stale:
            built = _by_day(fetch, query, customer, stale[0], stale[-1] + 1, bounds)
            with self._lock:
                for day, count in counts:
                    if day in built:
                        rows, text = built[day]
                        found[day] = entry = (count, rows, text)
                        self._remember((*shape, day), entry)
        return [(day, entry[1], entry[2]) for day, entry in found.items() if entry is not None]

    def _remember(self, key: tuple[Any, ...], entry: tuple[int, int, bytes]) -> None:
        old = self._days.pop(key, None)
        if old is not None:
            self._bytes -= len(old[2])
        if len(entry[2]) > self._max_bytes // 4:
            return
        self._days[key] = entry
        self._bytes += len(entry[2])
        while self._bytes > self._max_bytes:
            _, dropped = self._days.popitem(last=False)
            self._bytes -= len(dropped[2])


def _by_day(
    fetch: Fetch,
    query: AggregateQuery,
    customer: str | None,
    first: int,
    end: int,
    bounds: Callable[[Any], tuple[int | None, int | None]],
) -> dict[int, tuple[int, bytes]]:
    """{day: (rows, JSON)} for every day of [first, end) with records in the workspace."""
    windows = _grouped(fetch, query, customer, " AND day >= ? AND day < ?", [first, end], day_keys=True)
    return {day: (rows, text) for day, rows, text in _with_windows(windows, bounds)}


def _with_windows(
    windows: list[tuple[Any, int, str]], bounds: Callable[[Any], tuple[int | None, int | None]]
) -> list[tuple[Any, int, bytes]]:
    """The windows' JSON, UTF-8, with each row's windowStart / windowEnd in place."""
    return [
        (key, rows, text.replace(_WINDOW, _window_pair(*bounds(key))).encode() if rows else b"")
        for key, rows, text in windows
    ]


def _grouped(
    fetch: Fetch, query: AggregateQuery, customer: str | None, scope: str, days: list[int], *, day_keys: bool = False
) -> list[tuple[Any, int, str]]:
    """[(window key, rows, JSON)] in window order; with `day_keys` every day with records in the
    workspace is listed, (day, 0, '') when it has no row of the answer."""
    workspace = query.where.workspace
    key = {"day": "day", "month": "strftime('%Y-%m', day * 86400, 'unixepoch')"}.get(query.window, "NULL")
    row_json = _row_json(query)
    metrics = "".join(f", {ROLLUP_SUMS[name]} AS m{i}" for i, name in enumerate(query.metrics))
    summed = "".join(f", SUM({ROLLUP_SUMS[name]}) AS m{i}" for i, name in enumerate(query.metrics))
    if customer is not None or "customer" not in query.group_by:
        # one usage_daily row per day: the customer's, or the workspace's ('')
        scoped = customer if customer is not None else ALL_CUSTOMERS
        if query.window == "day":  # a row is a window: nothing to add up
            rows = (
                f"SELECT day AS k, customer_id AS g, {_RECORDS} AS n{metrics} FROM usage_daily"
                f" WHERE workspace = ? AND customer_id = ?{scope} AND n != 0"
            )
        else:
            rows = (
                f"SELECT {key} AS k, customer_id AS g, SUM({_RECORDS}) AS n{summed} FROM usage_daily"
                f" WHERE workspace = ? AND customer_id = ?{scope} GROUP BY 1 HAVING n != 0"
            )
        found = fetch(f"SELECT k, 1, {row_json} FROM ({rows}) ORDER BY k", [workspace, scoped, *days])
        windows = [(k, n, text) for k, n, text in found]
    else:
        # Every customer's rows per window, and before them the window's records without a
        # customer: the workspace's row ('') less its customers' rows. SQLite joins each window's
        # customers in index order (day, customer_id): no sort, and no GROUP BY of day windows.
        if query.window == "day":
            customers = (
                f"SELECT day AS k, customer_id AS g{metrics}, {_RECORDS} AS n FROM usage_daily"
                f" WHERE workspace = ? AND customer_id != ''{scope} AND n != 0 ORDER BY day, customer_id"
            )
        else:
            customers = (
                f"SELECT {key} AS k, customer_id AS g{summed}, SUM({_RECORDS}) AS n FROM usage_daily"
                f" WHERE workspace = ? AND customer_id != ''{scope} GROUP BY 1, 2 HAVING n != 0 ORDER BY 1, 2"
            )
        joined = {
            k: (n, text)
            for k, n, text in fetch(
                f"SELECT k, COUNT(*), group_concat({row_json}, ',') FROM ({customers}) GROUP BY k",
                [workspace, *days],
            )
        }
        signed = "SUM(CASE WHEN customer_id = '' THEN {0} ELSE -({0}) END)"
        rest_sums = "".join(f", {signed.format(ROLLUP_SUMS[name])} AS m{i}" for i, name in enumerate(query.metrics))
        rest = (
            f"SELECT {key} AS k, NULL AS g, {signed.format(_RECORDS)} AS n{rest_sums} FROM usage_daily"
            f" WHERE workspace = ?{scope} GROUP BY 1"
        )
        windows = []
        for k, n, text in fetch(f"SELECT k, n, {row_json} FROM ({rest}) ORDER BY k", [workspace, *days]):
            rows, customer_text = joined.pop(k, (0, ""))
            texts = [t for t in ((text if n else ""), customer_text) if t]
            windows.append((k, rows + (1 if n else 0), ",".join(texts)))
        if joined:  # cannot happen: every customer row has its workspace row
            raise RuntimeError("usage_daily lacks a workspace row")
    if day_keys:
        present = {k for k, _, _ in windows}
        windows += [
            (day, 0, "")
            for (day,) in fetch(
                f"SELECT day FROM usage_daily WHERE workspace = ? AND customer_id = ''{scope}", [workspace, *days]
            )
            if day not in present
        ]
    return windows
