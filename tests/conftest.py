"""Shared fixtures: a real collector on ephemeral ports, in a background event loop.

`running_collector(config)` starts the whole collector (gRPC + HTTP + SQLite writer) the way
`spanmeter serve` does, so tests speak real OTLP to it over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from spanmeter.background import BackgroundCollector, background_collector
from spanmeter.config import Config, parse_config
from tests.postgres_server import PostgresServer, postgres_server


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """A config on ephemeral loopback ports with its database in tmp_path; `overrides` are merged
    into the raw YAML mapping (nested dicts merge)."""
    raw: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}},
        "storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}},
    }
    _merge(raw, overrides)
    return parse_config(raw, {})


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class RunningCollector(BackgroundCollector):
    def records(self, limit: int = 10_000, **where: Any) -> list[Any]:
        from spanmeter.store.base import RecordFilter

        return self.collector.store.recent(RecordFilter(**where), limit)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.collector.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@contextmanager
def running_collector(config: Config) -> Iterator[RunningCollector]:
    with background_collector(config) as running:
        yield RunningCollector(running.collector, running.loop)


@contextmanager
def writer_held(path: Path) -> Iterator[None]:
    """Another process's write transaction on the database: the collector's writer waits for it
    (up to storage::sqlite::busy_timeout), and requests queue up behind it."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(make_config(tmp_path)) as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (tests/postgres_server.py); a missing
    server is an error, not a skip."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres: PostgresServer) -> str:
    """The DSN of a fresh, empty database on the session's server."""
    return postgres.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The `storage` section of a config, once per backend: tests that take it run on both."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        return {"postgres": {"dsn": server.new_database()}}
    return {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A factory of stores on one database, once per backend (SQLite, PostgreSQL): a second call
    is another process's store on the same database. Keyword options both backends take
    (max_queued_records, retry_after) go to the store. Not started; closed at the end."""
    made: list[Any] = []
    if request.param == "postgres":
        from spanmeter.store.postgres import PostgresStore

        dsn = request.getfixturevalue("postgres").new_database()

        def make(**options: Any) -> Any:
            made.append(PostgresStore(dsn, **options))
            return made[-1]
    else:
        from spanmeter.store.sqlite import SQLiteStore

        def make(**options: Any) -> Any:
            made.append(SQLiteStore(tmp_path / "store.db", **options))
            return made[-1]

    yield make
    for store in made:
        asyncio.run(store.close())
