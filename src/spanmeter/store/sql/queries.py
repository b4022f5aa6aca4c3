"""The query API's reads, on either backend: record pages, daily series, period totals, adoption rows.

Reads run through the backend's `fetch` (its read connections). Pages are keyed on `seq`, the
insertion order, which both backends assign in commit order (SQLite's single writer; PostgreSQL's
write lock, store/postgres/records.py), so a cursor `seq < N` (desc) or `seq > N` (asc) neither
skips nor repeats records inserted meanwhile.
Meta filters compare an entry's value (`json_extract(meta, '$."key"')` on SQLite) while walking a
page's index in seq order: a page stops after `take` matches, so common values are fast; a value
rarer than about one record in 10^5 makes the page read much of the workspace (no meta index: it
cost ~70% of ingest speed). The SQL is built in the backend's dialect (store/sql/dialect.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from spanmeter.record import UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.constants import ALL_CUSTOMERS, DAY_NS, HOUR_NS
from spanmeter.store.queries import (
    EQUALITY_FILTERS,
    CsvLine,
    CsvLines,
    DailyTotals,
    PeriodTotals,
    ProductAdoption,
    RecordQuery,
    UnknownModel,
)
from spanmeter.store.schema import COLUMNS, row_to_record
from spanmeter.store.sql.adoption_last_events import LAST_COLUMNS
from spanmeter.store.sql.adoption_rollup import CATEGORY_KEY, DEVELOPER, PRODUCT_EVENTS, PRODUCT_KEY
from spanmeter.store.sql.adoption_rollup import FAMILY_COLUMNS as _FAMILY_COLUMNS
from spanmeter.store.sql.connection import Fetch
from spanmeter.store.sql.dialect import Dialect
from spanmeter.store.sql.items import complete_items
from spanmeter.store.sql.rollup import sum_quantities
from spanmeter.usage_schema import EVENT_FAMILIES

_ALLOWED_COLUMNS: Final = frozenset(EQUALITY_FILTERS.values())
_STORED: Final = frozenset(COLUMNS)
_RECORD_COLUMNS: Final = ", ".join(f"r.{c}" for c in COLUMNS)
_SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM records"


class SQLQueries:
    """The reads of the query API and the CLI, on the read connections (their SQL in `dialect`).
    A backend's subclass may answer some of them its own faster way (store/sqlite/queries.py)."""

    def __init__(self, fetch: Fetch, dialect: Dialect) -> None:
        self._fetch = fetch
        self.dialect = dialect
        self._secret: bytes | None = None

    # --- records -----------------------------------------------------------------------------
    def recent(self, where: RecordFilter, limit: int) -> list[UsageRecord]:
        clauses, params = [], []  # type: list[str], list[Any]
        for column, value in (("workspace", where.workspace), ("customer_id", where.customer_id), ("kind", where.kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.since_ns is not None:
            clauses.append("occurred_at >= ?")
            params.append(where.since_ns)
        where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        # By when they occurred, not when they arrived: batches arrive out of time order.
        sql = f"{_SELECT}{where_sql} ORDER BY occurred_at DESC, seq DESC LIMIT ?"
        return [row_to_record(row) for row in self._fetch(sql, [*params, limit])]

    def workspaces(self) -> list[str]:
        """Workspaces that hold records (read from the daily rollups: a few rows, not the records)."""
        return [w for (w,) in self._fetch("SELECT DISTINCT workspace FROM usage_daily ORDER BY 1", [])]

    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        rows = self._fetch("SELECT id FROM records WHERE workspace = ? AND idempotency_key = ?",
                           [workspace, idempotency_key])
        return str(rows[0][0]) if rows else None

    def query_records(self, query: RecordQuery) -> list[tuple[int, UsageRecord]]:
        walk = bool(query.equals) or self._walk_seq_for_time_range(query)
        sql, params = build_page_sql(query, walk_seq=walk, dialect=self.dialect)
        return [(row[0], row_to_record(row[1:])) for row in self._fetch(sql, params)]

    def query_columns(self, query: RecordQuery, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        unknown = [c for c in columns if c not in _STORED]
        if unknown:  # names from code, never from a client; checked all the same
            raise ValueError(f"not a records column: {', '.join(unknown)}")
        walk = bool(query.equals) or self._walk_seq_for_time_range(query)
        sql, params = build_page_sql(
            query, walk_seq=walk, select=", ".join(f"r.{c}" for c in columns), dialect=self.dialect
        )
        return self._fetch(sql, params)

    def query_csv_lines(self, query: RecordQuery, line: CsvLine) -> CsvLines | None:
        return None  # no SQL of its own for the lines: the export writes them in Python

    def query_items(self, query: RecordQuery, item_of: Callable[[UsageRecord], str]) -> list[tuple[int, str]]:
        walk = bool(query.equals) or self._walk_seq_for_time_range(query)
        # The page's seqs first, then the items of those only: a page that sorts a time range
        # would otherwise build the JSON of every record in the range before the sort picks 51
        # (one old day at 1M records: 105 ms against 22 ms).
        page, params = build_page_sql(query, walk_seq=walk, select="", dialect=self.dialect)
        direction = "DESC" if query.order == "desc" else "ASC"
        sql = f"SELECT seq, {self.dialect.item_json} FROM records WHERE seq IN ({page}) ORDER BY seq {direction}"
        rows = self._fetch(sql, [*params])
        items = complete_items(self._fetch, rows, item_of)
        return [(row[0], item) for row, item in zip(rows, items, strict=True)]

    def _walk_seq_for_time_range(self, query: RecordQuery) -> bool:
        """For a from/to page: is walking seq (insertion order) from the page's end cheaper than
        reading the whole time range from the occurred_at index and sorting it?

        Records mostly arrive in time order, so walking seq from the newest passes the records
        newer than the range before it finds the range's; the daily rollups count both sides.
        """
        if query.from_ns is None and query.to_ns is None:
            return False
        first = (query.from_ns or 0) // DAY_NS
        last = -(-query.to_ns // DAY_NS) if query.to_ns is not None else 2**62  # ceil: whole days
        outside = "day >= ?" if query.order == "desc" else "day < ?"
        [(passed, inside)] = self._fetch(
            f"SELECT SUM(CASE WHEN {outside} THEN messages + events + meters ELSE 0 END),"
            " SUM(CASE WHEN day >= ? AND day < ? THEN messages + events + meters ELSE 0 END)"
            " FROM usage_daily WHERE workspace = ? AND customer_id = ?",
            [last if query.order == "desc" else first, first, last, query.workspace, ALL_CUSTOMERS],
        )
        return (passed or 0) <= (inside or 0)

    # --- series and totals -------------------------------------------------------------------
    # Whole UTC days come from the daily rollups (store/sql/rollup.py), kept by the writer.
    def daily_totals(
        self, workspace: str, customer: str | None, start_ns: int, end_ns: int
    ) -> list[DailyTotals]:
        sql = (
            "SELECT day, tokens, messages, cost_nano FROM usage_daily"
            " WHERE workspace = ? AND customer_id = ? AND day >= ? AND day < ?"
        )
        params = [workspace, customer or ALL_CUSTOMERS, *_whole_days(start_ns, end_ns)]
        return [DailyTotals(*row) for row in self._fetch(sql, params)]

    def new_conversations(
        self, workspace: str, customer: str | None, start_ns: int, end_ns: int
    ) -> dict[int, int]:
        sql = (
            "SELECT day, new_conversations FROM usage_daily"
            " WHERE workspace = ? AND customer_id = ? AND day >= ? AND day < ? AND new_conversations > 0"
        )
        return dict(self._fetch(sql, [workspace, customer or ALL_CUSTOMERS, *_whole_days(start_ns, end_ns)]))

    def period_totals(self, workspace: str, customer: str | None, start_ns: int, end_ns: int) -> PeriodTotals:
        scope = [workspace, customer or ALL_CUSTOMERS]
        totals = self._fetch(
            "SELECT SUM(tokens), SUM(input_tokens), SUM(output_tokens), SUM(messages), SUM(events), SUM(meters),"
            " SUM(cost_nano) FROM usage_daily WHERE workspace = ? AND customer_id = ? AND day >= ? AND day < ?",
            [*scope, *_whole_days(start_ns, end_ns)],
        )[0]
        # Conversations with a record in the period (first before its end, last after its start).
        who = "" if customer is None else " AND customer_id = ?"
        [(conversations,)] = self._fetch(
            f"SELECT COUNT(*) FROM conversation_starts WHERE workspace = ?{who} AND last_at >= ? AND first_at < ?",
            [workspace, *([customer] if customer is not None else []), start_ns, end_ns],
        )
        tokens, input_tokens, output_tokens, messages, events, meters, cost = (value or 0 for value in totals)
        quantities = sum_quantities(self._fetch(
            "SELECT meter, quantity FROM meter_daily WHERE workspace = ? AND customer_id = ? AND day >= ? AND day < ?",
            [*scope, *_whole_days(start_ns, end_ns)],
        ))
        return PeriodTotals(
            tokens, input_tokens, output_tokens, messages, events, meters, conversations, cost, quantities
        )

    def records_and_cost(self, workspace: str, start_ns: int, end_ns: int) -> tuple[int, int]:
        [(records, cost)] = self._fetch(
            "SELECT SUM(messages + events + meters), SUM(cost_nano) FROM usage_daily"
            " WHERE workspace = ? AND customer_id = ? AND day >= ? AND day < ?",
            [workspace, ALL_CUSTOMERS, *_whole_days(start_ns, end_ns)],
        )
        return records or 0, cost or 0

    # --- pricing -----------------------------------------------------------------------------
    def unknown_models(self, workspace: str, since_ns: int | None = None) -> list[UnknownModel]:
        """Models stored as cost_source=unknown, most records first (an operator's list of
        overrides to add). A scan of the workspace's records: an operator's command, not an API."""
        since = "" if since_ns is None else " AND occurred_at >= ?"
        nulls_first = self.dialect.nulls_first
        rows = self._fetch(
            "SELECT provider, COALESCE(response_model, request_model) AS model, COUNT(*),"
            " COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), MIN(occurred_at), MAX(occurred_at)"
            f" FROM records WHERE workspace = ? AND kind = 'llm' AND cost_source = 'unknown'{since}"
            f" GROUP BY provider, model ORDER BY COUNT(*) DESC, {nulls_first('provider')}, {nulls_first('model')}",
            [workspace, *([since_ns] if since_ns is not None else [])],
        )
        return [UnknownModel(*row) for row in rows]

    # --- adoption ----------------------------------------------------------------------------
    def product_adoption(self, workspace: str, since_ns: int, category: str | None) -> list[ProductAdoption]:
        # The adoption rollups (store/sql/adoption_rollup.py): the period's whole UTC days, the
        # whole hours before its first midnight, the records of its partial first hour. Developers
        # and accounts are active when their last event is in the period: counted per day and hour
        # (adoption_last_events.py), and in the partial hour from the records that are their last.
        day = -(-since_ns // DAY_NS)  # the first whole day of the period
        hour = -(-since_ns // HOUR_NS)  # its first whole hour
        edge = [workspace, since_ns, hour * HOUR_NS]  # the partial first hour
        rollup_scope = " AND category = ?" if category is not None else ""
        records_scope = " AND product_category = ?" if category is not None else ""
        rollup_params = ["=" + category] if category is not None else []
        records_params = [category] if category is not None else []
        columns = f"product, category, product_id, product_name, product_type, events, {_ROLLUP_COUNTS}"
        counts_sql = (
            f"SELECT product, category, MAX(product_id), MAX(product_name), MAX(product_type), SUM(events),"
            f" {', '.join(f'SUM({c})' for c in _ROLLUP_COUNTS.split(', '))} FROM ("
            f" SELECT {columns} FROM adoption_daily WHERE workspace = ? AND day >= ?{rollup_scope}"
            f" UNION ALL SELECT {columns} FROM adoption_hourly WHERE workspace = ? AND hour >= ? AND hour < ?{rollup_scope}"
            f" UNION ALL SELECT {PRODUCT_KEY}, {CATEGORY_KEY}, product_id, product_name, product_type, 1,"
            f" {_RECORD_FAMILIES}, {', '.join('0' * len(LAST_COLUMNS))}"
            f" FROM records WHERE workspace = ? AND {PRODUCT_EVENTS} AND occurred_at >= ? AND occurred_at < ?"
            f"{records_scope}) AS counted GROUP BY product, category"
        )
        counts_params = [
            *[workspace, day, *rollup_params],
            *[workspace, hour, day * 24, *rollup_params],
            *edge, *records_params,
        ]  # fmt: skip
        per_category: dict[str, list[tuple[Any, ...]]] = {}
        for product, cat, *values in self._fetch(counts_sql, counts_params):
            per_category.setdefault(product, []).append((cat, *values))
        last = {  # (product, category) -> [developers, activated developers, accounts]
            (p, row[0]): [n or 0 for n in row[-len(LAST_COLUMNS) :]] for p, rows in per_category.items() for row in rows
        }
        if since_ns < hour * HOUR_NS:  # those whose last event is in the partial first hour
            bounds = [since_ns, hour * HOUR_NS]
            for product, cat, *edge_counts in self._fetch(
                _EDGE_SQL.format(scope=records_scope),
                [*bounds, *bounds, *edge, *records_params, workspace, *bounds, *edge, *records_params, workspace],
            ):
                counted = last.setdefault((product, cat), [0, 0, 0])
                for i, n in enumerate(edge_counts):
                    counted[i] += n
        developers = self._across_categories(
            "adoption_developers", "developer", ", COUNT(DISTINCT CASE WHEN activated_at >= ? THEN developer END)",
            [since_ns], workspace, since_ns, {p: [last[(p, c)][:2] for c, *_ in rows] for p, rows in per_category.items()},
        )  # fmt: skip
        accounts = self._across_categories(
            "adoption_accounts", "account", "", [], workspace, since_ns,
            {p: [last[(p, c)][2:] for c, *_ in rows] for p, rows in per_category.items()},
        )  # fmt: skip
        found = []
        for product, rows in per_category.items():
            count, activated = developers[product]
            found.append(
                ProductAdoption(
                    _most(row[1] for row in rows),
                    _most(row[2] for row in rows),
                    _most(row[3] for row in rows),
                    _most(None if row[0] == "" else row[0][1:] for row in rows),
                    count,
                    accounts[product][0],
                    sum(row[4] for row in rows),
                    activated,
                    {f: sum(row[5 + i] or 0 for row in rows) for i, f in enumerate(EVENT_FAMILIES)},
                )
            )
        return found

    def _across_categories(
        self,
        table: str,
        who: str,
        extra_distinct: str,
        extra_params: list[Any],
        workspace: str,
        since_ns: int,
        counted: dict[str, list[list[int]]],
    ) -> dict[str, tuple[int, ...]]:
        """{product: counts} from the counts of each of its categories (`counted`: distinct `who`
        active since since_ns, then the extra counts). Someone active in two categories of a
        product counts once: a product active in several is counted again with DISTINCT over
        its rows of `table` (keyed workspace, product, category, who)."""
        found: dict[str, tuple[int, ...]] = {}
        several = []
        for product, per_category in counted.items():
            active = [counts for counts in per_category if counts[0] > 0]
            if len(active) > 1:
                several.append(product)
            found[product] = tuple(active[0]) if active else tuple(0 for _ in per_category[0])
        if several:
            for product, *counts in self._fetch(
                f"SELECT product, COUNT(DISTINCT {who}){extra_distinct} FROM {table}"
                f" WHERE workspace = ? AND last_at >= ? AND product IN ({', '.join('?' * len(several))}) GROUP BY 1",
                [*extra_params, workspace, since_ns, *several],
            ):
                found[product] = tuple(counts)
        return found

    # --- cursor signing ----------------------------------------------------------------------
    def cursor_secret(self) -> bytes:
        if self._secret is None:
            found = self._fetch("SELECT value FROM spanmeter_secrets WHERE name = 'cursor'", [])
            self._secret = bytes.fromhex(found[0][0]) if found else os.urandom(32)
        return self._secret


def _most(values: Iterable[str | None]) -> str | None:
    """SQL's MAX: the greatest value that is not NULL."""
    return max((v for v in values if v is not None), default=None)


_ROLLUP_COUNTS: Final = ", ".join((*_FAMILY_COLUMNS, *LAST_COLUMNS))
_RECORD_FAMILIES: Final = ", ".join(  # 0 or 1, on PostgreSQL too (whose comparison is a boolean)
    f"CASE WHEN event_family = '{family}' THEN 1 ELSE 0 END" for family in EVENT_FAMILIES
)
# Per (product, category), the developers, activated developers and accounts whose last event
# (activation) is in [?, ?): the distinct ones of that range's records, looked up by key.
_EDGE_SQL: Final = (
    "SELECT d.product, d.category, COUNT(CASE WHEN d.last_at >= ? AND d.last_at < ? THEN 1 END),"
    " COUNT(CASE WHEN d.activated_at >= ? AND d.activated_at < ? THEN 1 END), 0"
    f" FROM (SELECT DISTINCT {PRODUCT_KEY} AS product, {CATEGORY_KEY} AS category, {DEVELOPER} AS developer"
    f"  FROM records WHERE workspace = ? AND {PRODUCT_EVENTS} AND occurred_at >= ? AND occurred_at < ?{{scope}}"
    f"  AND {DEVELOPER} IS NOT NULL) AS e"
    " JOIN adoption_developers AS d ON d.workspace = ? AND d.product = e.product AND d.category = e.category"
    " AND d.developer = e.developer GROUP BY 1, 2"
    " UNION ALL SELECT a.product, a.category, 0, 0, COUNT(CASE WHEN a.last_at >= ? AND a.last_at < ? THEN 1 END)"
    f" FROM (SELECT DISTINCT {PRODUCT_KEY} AS product, {CATEGORY_KEY} AS category, account_domain AS account"
    f"  FROM records WHERE workspace = ? AND {PRODUCT_EVENTS} AND occurred_at >= ? AND occurred_at < ?{{scope}}"
    "  AND account_domain IS NOT NULL) AS e"
    " JOIN adoption_accounts AS a ON a.workspace = ? AND a.product = e.product AND a.category = e.category"
    " AND a.account = e.account GROUP BY 1, 2"
)


def build_page_sql(
    query: RecordQuery, *, walk_seq: bool = False, select: str = _RECORD_COLUMNS,
    extra: tuple[list[str], list[Any]] = ([], []), dialect: Dialect,
) -> tuple[str, list[Any]]:
    """SELECT seq, COLUMNS... (or seq and `select`; seq alone for "") for one page, in `dialect`
    (no default: SQLite's SQL on another backend would run and answer wrongly, e.g. its NULL
    order). Public for the query-plan test.

    `walk_seq`: test the time range per row while walking an index in seq order, instead of
    reading the range from the occurred_at index and sorting it."""
    # "+" keeps SQLite off the occurred_at index, whose range it would read whole and sort (0.8 s
    # for a customer's 30 days at 10M records; 5 ms walking the customer's index in seq order).
    clauses, params = record_filters(query, use_time_index=not (walk_seq or query.equals), dialect=dialect)
    clauses, params = [*clauses, *extra[0]], [*params, *extra[1]]  # `extra`: more filters (WHERE clauses, parameters)
    direction, compare = ("DESC", "<") if query.order == "desc" else ("ASC", ">")
    if query.after_seq is not None:
        clauses.append(f"r.seq {compare} ?")
        params.append(query.after_seq)
    if query.before_seq is not None:
        clauses.append("r.seq < ?")
        params.append(query.before_seq)
    sql = f"SELECT r.seq{', ' if select else ''}{select} FROM records r WHERE {' AND '.join(clauses)} ORDER BY r.seq {direction} LIMIT ?"
    return sql, [*params, query.limit]


def record_filters(
    query: RecordQuery, *, dialect: Dialect, use_time_index: bool = True
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (ANDed, on `records r`) and parameters of a query's workspace and filters,
    in `dialect`: shared by record pages and aggregates."""
    clauses = ["r.workspace = ?"]
    params: list[Any] = [query.workspace]
    for column, value in query.equals:
        if column not in _ALLOWED_COLUMNS:  # columns come from EQUALITY_FILTERS, never from a client
            raise ValueError(f"not a filter column: {column}")
        clauses.append(f"r.{column} = ?")
        params.append(value)
    if query.model is not None:
        clauses.append("(r.response_model = ? OR r.request_model = ?)")
        params += [query.model, query.model]
    occurred = "r.occurred_at" if use_time_index else "+r.occurred_at"
    if query.from_ns is not None:
        clauses.append(f"{occurred} >= ?")
        params.append(query.from_ns)
    if query.to_ns is not None:
        clauses.append(f"{occurred} < ?")
        params.append(query.to_ns)
    for key, value in query.meta:
        if '"' in key or "\\" in key:  # not expressible as a JSON path label: look the entry up instead
            clauses.append(
                f"EXISTS (SELECT 1 FROM {dialect.object_entries('r.meta', 'j')} WHERE j.key = ? AND j.value = ?)"
            )
            params += [key, value]
        else:
            # The text test first: the stored JSON (json.dumps, sort_keys) holds `"key": "value"`
            # verbatim, and instr() costs far less per row than json_extract, which decides.
            entry, entry_params = dialect.json_value("r.meta", key)
            clauses.append(f"{dialect.position('r.meta', '?')} > 0 AND {entry} = ?")
            needle = f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
            params += [needle, *entry_params, value]
    if query.tag is not None:
        # As for meta: the stored JSON text (json.dumps) holds the tag verbatim; json_each decides.
        clauses.append(
            f"{dialect.position('r.tags', '?')} > 0"
            f" AND EXISTS (SELECT 1 FROM {dialect.array_elements('r.tags', 't')} WHERE t.value = ?)"
        )
        params += [json.dumps(query.tag), query.tag]
    return clauses, params


def _whole_days(start_ns: int, end_ns: int) -> tuple[int, int]:
    if start_ns % DAY_NS or end_ns % DAY_NS:
        raise ValueError("series ranges are whole UTC days")
    return start_ns // DAY_NS, end_ns // DAY_NS
