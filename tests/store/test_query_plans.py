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


def test_adoption_reads_the_product_events_index(tmp_path: Path) -> None:
    store = _PlanRecorder(tmp_path / "p.db")
    store.migrate()
    store.plans = []
    store.product_adoption("w", 0, None)
    store.product_adoption("w", 0, "databases")
    assert len(store.plans) == 2
    for plan in store.plans:
        assert "USING INDEX records_product_events" in plan and "SCAN records" not in plan, plan
