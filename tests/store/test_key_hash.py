"""(workspace, idempotency_key) is unique through a UNIQUE index of a 64-bit hash (store/sqlite/key_hash.py).

Real collisions are too rare to meet in a test, so these tests squeeze the hash into 3 slots: every
key then shares its first slot with others, and the store must still keep exactly one record per
key, count every duplicate and conflict, and lose no distinct key.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from spanmeter.record import UsageRecord
from spanmeter.store.base import WriteResult
from spanmeter.store.sqlite import SQLiteStore
from spanmeter.store.sqlite import key_hash as sqlite_store
from spanmeter.store.sqlite.key_hash import key_hash


def crowded_hash(workspace: str, key: str, probe: int = 0) -> int:
    return key_hash(workspace, key) % 3 if probe == 0 else key_hash(workspace, key, probe)


def record(n: int, key: str, workspace: str = "w", tokens: int = 1) -> UsageRecord:
    return UsageRecord(idempotency_key=key, kind="llm", type="chat", occurred_at=1_000 + n, workspace=workspace,
                       id=f"id-{n}", input_tokens=tokens)


async def write_batches(path: Path, batches: list[list[UsageRecord]]) -> list[WriteResult]:
    store = SQLiteStore(path)
    await store.start()
    try:
        return [await store.write(batch) for batch in batches]
    finally:
        await store.close()


def stored(path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT workspace, idempotency_key, input_tokens FROM records ORDER BY seq").fetchall()


# SQLite-only: key-hash probing is SQLite's (PostgreSQL has a unique index on the key itself).
def test_colliding_hashes_keep_one_record_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "key_hash", crowded_hash)
    rng = random.Random(5)
    keys = [(rng.choice(["w", "v"]), f"key-{i}") for i in range(40)]
    batches: list[list[UsageRecord]] = []
    n = 0
    for _ in range(6):  # each batch: random keys, some repeated inside the batch, some sent before
        batch = []
        for _ in range(15):
            workspace, key = rng.choice(keys)
            batch.append(record(n, key, workspace, tokens=rng.choice([1, 1, 1, 2])))  # tokens 2: a conflict
            n += 1
        batches.append(batch)
    results = asyncio.run(write_batches(tmp_path / "c.db", batches))

    sent = [r for batch in batches for r in batch]
    first: dict[tuple[str, str], UsageRecord] = {}
    for r in sent:
        first.setdefault((r.workspace, r.idempotency_key), r)
    assert sorted(stored(tmp_path / "c.db")) == sorted((w, k, r.input_tokens) for (w, k), r in first.items())
    assert sum(len(res.inserted) for res in results) == len(first)
    assert sum(res.duplicates for res in results) == len(sent) - len(first)
    conflicts = sum(1 for r in sent if first[(r.workspace, r.idempotency_key)].input_tokens != r.input_tokens)
    assert sum(res.conflicts for res in results) == conflicts
    with sqlite3.connect(tmp_path / "c.db") as conn:  # the probes really were used
        assert conn.execute("SELECT COUNT(*) FROM records WHERE key_hash BETWEEN 0 AND 2").fetchone()[0] == 3


# SQLite-only: key-hash probing is SQLite's (PostgreSQL has a unique index on the key itself).
def test_an_older_database_gets_its_hashes_and_keeps_deduplicating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    asyncio.run(write_batches(path, [[record(i, f"key-{i}") for i in range(12)]]))
    with sqlite3.connect(path) as conn:  # as spanmeter before m007 left it
        conn.execute("DROP INDEX records_key_hash")
        conn.execute("ALTER TABLE records DROP COLUMN key_hash")
        conn.execute("CREATE UNIQUE INDEX records_key ON records (workspace, idempotency_key)")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_key_hash'")
    monkeypatch.setattr(sqlite_store, "key_hash", crowded_hash)  # the migration meets collisions too

    again = [record(100 + i, f"key-{i}") for i in range(8, 16)]  # 4 stored before, 4 new
    (result,) = asyncio.run(write_batches(path, [again]))

    assert (len(result.inserted), result.duplicates) == (4, 4)
    assert sorted(k for _, k, _ in stored(path)) == sorted(f"key-{i}" for i in range(16))
    with sqlite3.connect(path) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(records)")}
    assert "records_key_hash" in indexes and "records_key" not in indexes
