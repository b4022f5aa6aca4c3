"""The query API's reads on SQLite: the shared SQL (store/sql/queries.py), and two answers
SQLite gives its own faster way: a record's id by its key's hash slots (key_hash.py: the records
table has no index on the key itself) and CSV lines written by SQLite (csv_sql.py)."""

from __future__ import annotations

import json

from spanmeter.store.queries import CsvLine, CsvLines, RecordQuery
from spanmeter.store.sql.connection import Fetch
from spanmeter.store.sql.queries import SQLQueries, build_page_sql
from spanmeter.store.sqlite.csv_sql import in_filters, line_select, plain_lines
from spanmeter.store.sqlite.dialect import SQLITE
from spanmeter.store.sqlite.key_hash import key_hash


class SQLiteQueries(SQLQueries):
    def __init__(self, fetch: Fetch) -> None:
        super().__init__(fetch, SQLITE)

    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        # The key's hash slots in probe order (key_hash.py): the first free one ends the search.
        probe = 0
        while True:
            rows = self._fetch(
                "SELECT workspace, idempotency_key, id FROM records WHERE key_hash = ?",
                [key_hash(workspace, idempotency_key, probe)],
            )
            if not rows:
                return None
            if rows[0][:2] == (workspace, idempotency_key):
                return str(rows[0][2])
            probe += 1

    def query_csv_lines(self, query: RecordQuery, line: CsvLine) -> CsvLines | None:
        walk = bool(query.equals) or self._walk_seq_for_time_range(query)
        sql, params = build_page_sql(
            query, walk_seq=walk, select=line_select(line, raw=True), extra=in_filters(line.where), dialect=self.dialect
        )
        quoted = f"SELECT seq, {line_select(line)} FROM records WHERE seq IN (SELECT value FROM json_each(?))"
        return plain_lines(self._fetch(sql, params), line, lambda seqs: self._fetch(quoted, [json.dumps(seqs)]))
