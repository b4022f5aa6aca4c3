"""A store that cannot write: the collector refuses to start and says which setting to fix; a disk
that fills while it runs is reported as such (503s, /readyz, /metrics), and it recovers alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from spanmeter.app import Collector
from spanmeter.cli import main
from spanmeter.errors import StorageError
from tests.conftest import make_config, running_collector
from tests.otlp_helpers import json_request, llm_raw_attrs, raw_span


# SQLite-only: a database file path and its config key.
def test_a_database_path_under_a_file_stops_start_up_naming_the_storage_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    path = tmp_path / "file" / "spanmeter.db"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}},
        "storage": {"sqlite": {"path": str(path)}},
    }))
    result = CliRunner().invoke(main, ["serve", "-c", str(config_path)])
    assert result.exit_code == 1
    assert f"cannot open the database {path}" in result.output
    assert "(storage::sqlite::path in the config)" in result.output
    assert "port" not in result.output


# SQLite-only: a database file locked by another process (PostgreSQL's refused start: test_postgres_store.py).
def test_a_locked_database_at_start_is_refused_with_the_reason(tmp_path: Path) -> None:
    config = make_config(tmp_path, storage={"sqlite": {"busy_timeout": 0.1}})
    Collector(config).store.migrate()
    blocker = sqlite3.connect(tmp_path / "spanmeter.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with (
            pytest.raises(StorageError, match=r"cannot write the database .*database is locked \(storage::sqlite::path"),
            running_collector(config),
        ):
            pass
    finally:
        blocker.execute("ROLLBACK")


def set_page_limit(conn: sqlite3.Connection, pages: int | None) -> None:
    """SQLite's page limit on the writer's connection: past it, writes fail exactly as on a full
    disk (SQLITE_FULL) — a full disk without a filesystem to fill."""
    limit = conn.execute("PRAGMA page_count").fetchone()[0] if pages is None else pages
    conn.execute(f"PRAGMA max_page_count={limit}")


# SQLite-only: SQLITE_FULL through SQLite's page limit (PostgreSQL's outage and /readyz: test_postgres_outage.py).
def test_a_full_disk_is_said_in_the_answer_readyz_and_metrics_and_recovered_from(tmp_path: Path) -> None:
    with running_collector(make_config(tmp_path)) as collector:
        store = collector.collector.store
        url = collector.http_url
        store.transaction(lambda conn: set_page_limit(conn, None))
        spans = [raw_span(n, llm_raw_attrs(**{"usage.meta.pad": {"stringValue": "x" * 4000}})) for n in range(1, 50)]
        response = httpx.post(f"{url}/v1/traces", content=json_request(spans), headers={"content-type": "application/json"})
        assert response.status_code == 503
        assert response.json()["message"].startswith("storage write failed: disk full: database or disk is full")
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert "disk full" in ready.json()["reason"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "spanmeter_storage_failing 1.0" in metrics
        assert 'spanmeter_storage_errors_total{reason="disk_full"} 1.0' in metrics

        store.transaction(lambda conn: set_page_limit(conn, 1_073_741_823))  # space again: no restart
        response = httpx.post(f"{url}/v1/traces", content=json_request(spans), headers={"content-type": "application/json"})
        assert response.status_code == 200
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
        assert "spanmeter_storage_failing 0.0" in httpx.get(f"{url}/metrics").text
        assert len(collector.records()) == 49
