"""Meter queries on SQLite: the shared SQL (store/sql/aggregate.py), with the rollup answer's
JSON built by SQLite itself (aggregate_json.py) instead of rows rendered in Python."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from zoneinfo import ZoneInfo

from spanmeter.store.aggregate import AggregateQuery, AggregateResult, TooManyRows
from spanmeter.store.sql.aggregate import SQLAggregate, window_bounds
from spanmeter.store.sql.connection import Fetch
from spanmeter.store.sqlite.aggregate_json import RollupJSON
from spanmeter.store.sqlite.dialect import SQLITE


class SQLiteAggregate(SQLAggregate):
    def __init__(
        self, fetch: Fetch, connection: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]
    ) -> None:
        """`connection`: a read connection of its own, for one read transaction."""
        super().__init__(fetch, SQLITE)
        self._connection = connection
        self._json_rows = RollupJSON()  # rollup answers as JSON, past days kept

    def _rollup_json(self, query: AggregateQuery) -> AggregateResult | None:
        customer = next((value for _, value in query.where.equals), None)
        with self._connection() as conn:
            found = self._json_rows.answer(conn, query, customer, window_bounds(query.window, ZoneInfo("UTC")))
        if found is None:  # maybe too many rows: counted exactly the slower way
            return AggregateResult(self._from_rollups(query), "rollup")
        count, text = found
        if count > query.max_rows:
            raise TooManyRows(query.max_rows)
        return AggregateResult([], "rollup", text)
