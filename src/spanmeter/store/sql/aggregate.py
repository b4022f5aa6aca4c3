"""Meter queries (`GET /api/v1/usage/aggregate`, `spanmeter usage`) in the store's shared SQL.

Three sources give the same numbers:
- the daily rollups (`usage_daily`, rollup.py) when they hold everything asked: windows of a
  UTC day, a UTC month or none, grouped by nothing or by customer, filtered by customer only, cost,
  tokens and record counts, from/to on UTC midnights. 30 days of 2,000 customers is ~60,000 small
  rows whatever the number of records;
- the per-model daily rollup (`usage_daily_model`, model_rollup.py) for the same windows grouped or
  filtered by kind, provider or model;
- the records otherwise (any time zone, hour windows, meta keys, distinct counts, exact meter
  quantities), read through the same filters as a records page.

`SQLAggregate` answers from these on any backend, through `fetch` and in the backend's dialect
(store/sql/dialect.py). SQLite's `SQLiteAggregate` (store/sqlite/aggregate.py) adds what only
SQLite can do: the rollup answer's JSON built by SQLite itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from spanmeter.store.aggregate import (
    HOUR_NS,
    META_PREFIX,
    NS,
    AggregateQuery,
    AggregateResult,
    AggregateRow,
    TooManyRows,
    is_utc,
    local_day_start,
    local_month_bounds,
    offset_periods,
    zone,
)
from spanmeter.store.constants import ALL_CUSTOMERS, DAY_NS
from spanmeter.store.queries import RecordQuery
from spanmeter.store.sql import model_rollup
from spanmeter.store.sql.connection import Fetch
from spanmeter.store.sql.dialect import Dialect
from spanmeter.store.sql.queries import record_filters

_TOKENS: Final = "COALESCE(r.total_tokens, COALESCE(r.input_tokens, 0) + COALESCE(r.output_tokens, 0))"
# metric -> its SQL over `records r`; quantity is summed exactly in Python (stored as decimal text)
_RECORD_METRICS: Final = {
    "cost": "SUM(COALESCE(r.cost_usd_nano, 0))",
    "input_tokens": "SUM(CASE WHEN r.kind = 'llm' THEN COALESCE(r.input_tokens, 0) ELSE 0 END)",
    "output_tokens": "SUM(CASE WHEN r.kind = 'llm' THEN COALESCE(r.output_tokens, 0) ELSE 0 END)",
    "total_tokens": f"SUM(CASE WHEN r.kind = 'llm' THEN {_TOKENS} ELSE 0 END)",
    "records": "COUNT(*)",
    "distinct_users": "COUNT(DISTINCT r.user_id)",
    "distinct_conversations": "COUNT(DISTINCT r.conversation_id)",
}
_ROLLUP_METRICS: Final = {
    "cost": "SUM(cost_nano)",
    "input_tokens": "SUM(input_tokens)",
    "output_tokens": "SUM(output_tokens)",
    "total_tokens": "SUM(tokens)",
    "records": "SUM(messages + events + meters)",
}
_DIMENSION_SQL: Final = {
    "customer": "r.customer_id",
    "provider": "r.provider",
    "model": "COALESCE(r.response_model, r.request_model)",
    "kind": "r.kind",
    "type": "r.type",
    "meter": "r.meter",
}


class SQLAggregate:
    """Meter queries from the rollups and the records, on any backend's read queries."""

    def __init__(self, fetch: Fetch, dialect: Dialect) -> None:
        self._fetch = fetch
        self.dialect = dialect

    def _rollup_window_key(self, window: str) -> str:
        """A rollup row's window key, as the records' is computed (`day`: days since the epoch)."""
        return {"day": "day", "month": self.dialect.month_of(f"day * {DAY_NS // NS}"), "none": "NULL"}[window]

    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        """Rows of (window, group) with at least one record, in window then group order (no
        group first). Raises TooManyRows past `query.max_rows`, ValueError for an unknown metric,
        dimension or zone."""
        tz = zone(query.tz)
        for name in query.metrics:
            if name not in _RECORD_METRICS and name != "quantity":
                raise ValueError(f"unknown metric {name!r}")
        if answerable_from_rollups(query):
            if query.as_json and (built := self._rollup_json(query)) is not None:
                return built
            return AggregateResult(self._from_rollups(query), "rollup")
        if answerable_from_model_rollup(query):
            return AggregateResult(self._from_model_rollup(query), "rollup")
        return AggregateResult(self._from_records(query, tz), "records")

    def _rollup_json(self, query: AggregateQuery) -> AggregateResult | None:
        """The rollup answer as the API's JSON text, built by the database; None where the
        backend cannot (the API renders the rows instead: the same text)."""
        return None

    # --- rollups -----------------------------------------------------------------------------
    def _from_rollups(self, query: AggregateQuery) -> list[AggregateRow]:
        where = query.where
        customer = next((value for _, value in where.equals), None)
        by_customer = "customer" in query.group_by
        key = self._rollup_window_key(query.window)
        clauses: list[str] = ["workspace = ?"]
        params: list[Any] = [where.workspace]
        if customer is not None:
            clauses.append("customer_id = ?")
            params.append(customer)
        elif not by_customer:
            clauses.append("customer_id = ?")
            params.append(ALL_CUSTOMERS)
        _add_day_range(where, clauses, params)
        sums = ", ".join(_ROLLUP_METRICS[name] for name in query.metrics)
        sql = (
            f"SELECT {key}, customer_id, {_ROLLUP_METRICS['records']}{', ' if sums else ''}{sums}"
            f" FROM usage_daily WHERE {' AND '.join(clauses)} GROUP BY 1, 2 ORDER BY {self._order(2)} LIMIT ?"
        )
        limit = 2 * query.max_rows + 2  # a workspace row per window beside its customers' rows
        found = self._fetch(sql, [*params, limit])
        if len(found) == limit:
            raise TooManyRows(query.max_rows)
        bounds = window_bounds(query.window, ZoneInfo("UTC"))
        rows: list[AggregateRow] = []
        if customer is not None or not by_customer:
            for window_key, scope, count, *values in found:
                if count:
                    group = (customer if customer is not None else scope,) if by_customer else ()
                    rows.append(_row(bounds(window_key), group, query.metrics, values))
        else:  # records without a customer: the workspace's total less every customer's
            for window_key, rollup_rows in _by_window(found):
                total, customers = rollup_rows[0], rollup_rows[1:]
                if total[1] != ALL_CUSTOMERS:  # no workspace row: cannot happen, rollups add both
                    raise RuntimeError("usage_daily lacks a workspace row")
                window = bounds(window_key)
                rest = [a - sum(c[i] for c in customers) for i, a in enumerate(total[2:], start=2)]
                if rest[0]:
                    rows.append(_row(window, (None,), query.metrics, rest[1:]))
                for _, scope, count, *values in customers:
                    if count:
                        rows.append(_row(window, (scope,), query.metrics, values))
        if len(rows) > query.max_rows:
            raise TooManyRows(query.max_rows)
        return rows

    def _from_model_rollup(self, query: AggregateQuery) -> list[AggregateRow]:
        where = query.where
        key = self._rollup_window_key(query.window)
        clauses: list[str] = ["workspace = ?"]
        params: list[Any] = [where.workspace]
        for column, value in where.equals:
            clauses.append(model_rollup.FILTER_SQL[column])
            params.append(value)
        _add_day_range(where, clauses, params)
        keys = [key, *(model_rollup.DIMENSION_SQL[name] for name in query.group_by)]
        sums = "".join(f", {model_rollup.METRIC_SUMS[name]}" for name in query.metrics)
        numbers = ", ".join(str(i) for i in range(1, len(keys) + 1))
        sql = (
            f"SELECT {', '.join(keys)}, {model_rollup.METRIC_SUMS['records']}{sums} FROM usage_daily_model"
            f" WHERE {' AND '.join(clauses)} GROUP BY {numbers} HAVING {model_rollup.METRIC_SUMS['records']} != 0"
            f" ORDER BY {self._order(len(keys))} LIMIT ?"
        )
        found = self._fetch(sql, [*params, query.max_rows + 1])
        if len(found) > query.max_rows:
            raise TooManyRows(query.max_rows)
        bounds = window_bounds(query.window, ZoneInfo("UTC"))
        width = len(keys)
        return [_row(bounds(row[0]), tuple(row[1:width]), query.metrics, list(row[width + 1 :])) for row in found]

    # --- records -----------------------------------------------------------------------------
    def _from_records(self, query: AggregateQuery, tz: ZoneInfo) -> list[AggregateRow]:
        where = query.where
        clauses, filter_params = record_filters(where, dialect=self.dialect)
        window_sql = "NULL"
        if query.window != "none":
            span = self._time_span(query)
            if span is None:
                return []
            periods = offset_periods(tz, *span)
            offset = _offset_sql(periods, lambda o: o)
            window_sql = {
                "hour": f"((r.occurred_at + {_offset_sql(periods, lambda o: o % HOUR_NS)}) / {HOUR_NS}) * {HOUR_NS}"
                f" - {_offset_sql(periods, lambda o: o % HOUR_NS)}",
                "day": f"(r.occurred_at + {offset}) / {DAY_NS}",
                "month": self.dialect.month_of(f"(r.occurred_at + {offset}) / {NS}"),
            }[query.window]
        group_sql, group_params = [], []
        for name in query.group_by:
            if name.startswith(META_PREFIX):
                meta_key = name[len(META_PREFIX) :]
                if not meta_key or '"' in meta_key or "\\" in meta_key:
                    raise ValueError(f"meta key not usable in group_by: {meta_key!r}")
                entry, entry_params = self.dialect.json_value("r.meta", meta_key)
                group_sql.append(entry)
                group_params += entry_params
            elif name in _DIMENSION_SQL:
                group_sql.append(_DIMENSION_SQL[name])
            else:
                raise ValueError(f"unknown dimension {name!r}")
        keys = [window_sql, *group_sql]
        summed = [name for name in query.metrics if name != "quantity"]
        select = ", ".join([*keys, "COUNT(*)", *(_RECORD_METRICS[name] for name in summed)])
        numbers = ", ".join(str(i) for i in range(1, len(keys) + 1))
        group = f" GROUP BY {numbers} ORDER BY {self._order(len(keys))}"
        sql = f"SELECT {select} FROM records r WHERE {' AND '.join(clauses)}{group} LIMIT ?"
        found = self._fetch(sql, [*group_params, *filter_params, query.max_rows + 1])
        if len(found) > query.max_rows:
            raise TooManyRows(query.max_rows)
        quantities: dict[tuple[Any, ...], Decimal] = {}
        if "quantity" in query.metrics:
            quantities = self._quantities(keys, group_params, clauses, filter_params)
        bounds = window_bounds(query.window, tz)
        width = len(keys)
        rows = []
        for row in found:
            if not row[width]:
                continue  # no record at all (an ungrouped query over nothing)
            values = dict(zip(summed, row[width + 1 :], strict=True))
            if "quantity" in query.metrics:
                values["quantity"] = quantities.get(row[:width], Decimal(0))
            ordered = [values[name] for name in query.metrics]
            rows.append(_row(bounds(row[0]), tuple(row[1:width]), query.metrics, ordered))
        return rows

    def _order(self, count: int) -> str:
        """ORDER BY the first `count` columns, NULL first (no customer, model, meta value...)."""
        return ", ".join(self.dialect.nulls_first(str(i)) for i in range(1, count + 1))

    def _quantities(
        self, keys: list[str], group_params: list[Any], clauses: list[str], filter_params: list[Any]
    ) -> dict[tuple[Any, ...], Decimal]:
        """Meter quantities per key, summed exactly: SQL counts each distinct stored value, Python
        adds value x count as Decimal (SQLite would add floats)."""
        numbers = ", ".join(str(i) for i in range(1, len(keys) + 1))
        sql = (
            f"SELECT {', '.join(keys)}, r.quantity, COUNT(*) FROM records r"
            f" WHERE {' AND '.join(clauses)} AND r.kind = 'meter' AND r.quantity IS NOT NULL"
            f" GROUP BY {numbers}, {len(keys) + 1}"
        )
        sums: dict[tuple[Any, ...], Decimal] = {}
        for *key, quantity, count in self._fetch(sql, [*group_params, *filter_params]):
            sums[tuple(key)] = sums.get(tuple(key), Decimal(0)) + Decimal(quantity) * count
        return sums

    def _time_span(self, query: AggregateQuery) -> tuple[int, int] | None:
        """[start, end) of the query's time range, narrowed to the workspace's records (a query
        without from/to covers all time); None when no record is in it."""
        where = query.where
        [(first,)] = self._fetch(
            "SELECT MIN(occurred_at) FROM records WHERE workspace = ?", [where.workspace]
        )
        [(last,)] = self._fetch("SELECT MAX(occurred_at) FROM records WHERE workspace = ?", [where.workspace])
        if first is None:
            return None
        start = max(first, where.from_ns if where.from_ns is not None else first)
        end = min(last + 1, where.to_ns if where.to_ns is not None else last + 1)
        return (start, end) if start < end else None


def _add_day_range(where: RecordQuery, clauses: list[str], params: list[Any]) -> None:
    """The query's from/to (UTC midnights: answerable_from_*) as a daily rollup's `day` range."""
    if where.from_ns is not None:
        clauses.append("day >= ?")
        params.append(where.from_ns // DAY_NS)
    if where.to_ns is not None:
        clauses.append("day < ?")
        params.append(where.to_ns // DAY_NS)


def answerable_from_rollups(query: AggregateQuery) -> bool:
    """Do the daily rollups hold everything `query` asks? (They are kept per workspace, customer
    and UTC day, with cost, tokens and record counts.)"""
    where = query.where
    return (
        (query.window == "none" or (query.window in ("day", "month") and is_utc(query.tz)))
        and set(query.group_by) <= {"customer"}
        and set(query.metrics) <= set(_ROLLUP_METRICS)
        and all(column == "customer_id" for column, _ in where.equals)
        and where.model is None
        and not where.meta
        and where.tag is None
        and all(bound is None or bound % DAY_NS == 0 for bound in (where.from_ns, where.to_ns))
    )


def answerable_from_model_rollup(query: AggregateQuery) -> bool:
    """Does the per-model daily rollup hold everything `query` asks? (Kept per workspace, UTC day,
    kind, provider and model, with cost, tokens and record counts.)"""
    where = query.where
    return (
        (query.window == "none" or (query.window in ("day", "month") and is_utc(query.tz)))
        and set(query.group_by) <= set(model_rollup.DIMENSION_SQL)
        and set(query.metrics) <= set(model_rollup.METRIC_SUMS)
        and all(column in model_rollup.FILTER_SQL for column, _ in where.equals)
        and where.model is None
        and not where.meta
        and where.tag is None
        and all(bound is None or bound % DAY_NS == 0 for bound in (where.from_ns, where.to_ns))
    )


def _offset_sql(periods: list[tuple[int, int]], part: Callable[[int], int]) -> str:
    """The zone's offset (or `part` of it) at r.occurred_at, as SQL: a literal, or a CASE over
    the offset changes in the range. Only integers we computed go into the text."""
    if len(periods) == 1:
        return str(part(periods[0][1]))
    cases = " ".join(
        f"WHEN r.occurred_at < {periods[i + 1][0]} THEN {part(offset)}"
        for i, (_, offset) in enumerate(periods[:-1])
    )
    return f"(CASE {cases} ELSE {part(periods[-1][1])} END)"


def window_bounds(window: str, tz: ZoneInfo) -> Callable[[Any], tuple[int | None, int | None]]:
    """Window key (as the SQL computes it) -> (start, end) in UTC ns, memoised per key."""
    cache: dict[Any, tuple[int | None, int | None]] = {}

    def compute(key: Any) -> tuple[int | None, int | None]:
        if window == "hour":
            return key, key + HOUR_NS
        if window == "day":
            return local_day_start(tz, key), local_day_start(tz, key + 1)
        if window == "month":
            return local_month_bounds(tz, key)
        return None, None

    def bounds(key: Any) -> tuple[int | None, int | None]:
        found = cache.get(key)
        if found is None:
            found = cache[key] = compute(key)
        return found

    return bounds


def _row(
    window: tuple[int | None, int | None], group: tuple[Any, ...], metrics: tuple[str, ...], values: list[Any]
) -> AggregateRow:
    return AggregateRow(window[0], window[1], group, dict(zip(metrics, [v or 0 for v in values], strict=True)))


def _by_window(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
    """Consecutive rows of one window key (the SQL groups by key first, '' sorts first)."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            yield rows[start][0], rows[start:i]
            start = i
