"""Query plans of the aggregate endpoints: they read an index made for them, not the table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from spanmeter.store.sqlite import SQLiteStore


class _PlanRecorder(SQLiteStore):
    """The real store, answering with the plan of each query instead of its rows."""

    def _fetch(self, sql: str, params: list) -> list:  # type: ignore[type-arg, override]
        with sqlite3.connect(self.path) as conn:
            self.plans.append(" | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)))
        return []

    plans: list[str]


# SQLite-only: SQLite's EXPLAIN QUERY PLAN.
def test_adoption_reads_its_rollups_and_one_hour_of_the_product_events_index(tmp_path: Path) -> None:
    """Its days and hours from the rollups, the developers and accounts of its partial first hour
    looked up by key: never every developer of the workspace."""
    store = _PlanRecorder(tmp_path / "p.db")
    store.migrate()
    store.plans = []
    store.product_adoption("w", 12_345, None)
    store.product_adoption("w", 12_345, "databases")
    assert len(store.plans) == 4
    for plan in store.plans:
        assert "SCAN records" not in plan and "SCAN adoption" not in plan, plan
        assert "USING INDEX records_product_events (workspace=? AND occurred_at>? AND occurred_at<?)" in plan
    counts, edges = store.plans[0::2], store.plans[1::2]
    for plan in counts:
        assert "SEARCH adoption_daily USING PRIMARY KEY (workspace=? AND day>?)" in plan, plan
        assert "SEARCH adoption_hourly USING PRIMARY KEY (workspace=? AND hour>? AND hour<?)" in plan, plan
    for plan in edges:
        assert "SEARCH d USING PRIMARY KEY (workspace=? AND product=? AND category=? AND developer=?)" in plan, plan
        assert "SEARCH a USING PRIMARY KEY (workspace=? AND product=? AND category=? AND account=?)" in plan, plan


# SQLite-only: the SQLite writer's statements and SQLite's query plans.
def test_the_writer_looks_conversations_up_by_primary_key(tmp_path: Path) -> None:
    """Each batch looks up its conversations' stored starts: a scan of conversation_starts made
    every write slower as conversations accumulated."""
    from spanmeter.store.sql import rollup

    store = SQLiteStore(tmp_path / "p.db")
    store.migrate()
    plans: list[str] = []

    class Recording(sqlite3.Connection):
        def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:  # type: ignore[override]
            if "FROM conversation_starts" in sql:
                plans.append(" | ".join(r[3] for r in super().execute(f"EXPLAIN QUERY PLAN {sql}", params)))
            return super().execute(sql, params)  # type: ignore[arg-type]

    conn = sqlite3.connect(tmp_path / "p.db", factory=Recording)
    keys = [("w1", f"c{i}") for i in range(3)] + [("w2", "c0")]
    assert rollup._stored_starts(conn, keys) == {}
    assert len(plans) == 2  # one lookup per workspace
    for plan in plans:
        assert "SEARCH conversation_starts USING PRIMARY KEY (workspace=? AND conversation_id=?)" in plan, plan
        assert "SCAN conversation_starts" not in plan, plan
