"""spanmeter leaves the `sqlite3` module as it found it: no adapter or converter is registered, so
a program that embeds spanmeter keeps its own sqlite3 behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# In a fresh interpreter: this test process has imported spanmeter long before the test runs.
_PROGRAM = """
import asyncio, sqlite3, sys
before = (dict(sqlite3.adapters), dict(sqlite3.converters))

import spanmeter.app, spanmeter.cli
from spanmeter.config import load_config
from spanmeter.record import UsageRecord
from spanmeter.store.base import RecordFilter
from spanmeter.store.factory import open_store

config = load_config(None)
config = config.model_copy(update={"storage": config.storage.model_copy(update={
    "sqlite": config.storage.sqlite.model_copy(update={"path": sys.argv[1]})})})

async def main():
    store = open_store(config)
    await store.start()
    try:
        record = UsageRecord(id="r1", workspace="w", idempotency_key="k", occurred_at=1, received_at=1, kind="llm", type="t")
        assert len((await store.write([record])).inserted) == 1
        assert [r.id for r in store.recent(RecordFilter(), 10)] == ["r1"]
    finally:
        await store.close()

asyncio.run(main())
after = (dict(sqlite3.adapters), dict(sqlite3.converters))
print("unchanged" if after == before else f"changed: {before} -> {after}")
"""


# SQLite-only: the sqlite3 module's process-wide adapters.
def test_importing_spanmeter_and_opening_a_store_leaves_sqlite3_unchanged(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "s.db")], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unchanged"
