"""A 10x (or kx) database from a generated one, in SQL: minutes instead of a quarter of an hour.

`bench/queries.py` generates records in Python and writes them through `SQLiteStore.write` (the
real write path): ~9-17k records/s on the shared 2-core machine, 10-20 minutes for 10M. This
module instead copies a generated base database k times into a fresh database of the same schema
(`SQLiteStore.migrate()`: every migration, index and table), with `INSERT ... SELECT`, and then
fills the rollups with the migrations' own backfill SQL (the statements that upgrade a database
stored before the rollups existed). Copy j of a record (j = 1 .. k-1; copy 0 is the record
itself) differs from it so that the result looks like k times more usage, not k identical
records:

- idempotency key `<key>:<j>` and its key hash (new keys: the unique index takes them all), the
  record id's last hex digit replaced by j, `occurred_at` / `received_at` + j ns;
- customers below rank 10 of their workspace keep their records; the others are swapped within
  blocks of 10 neighbouring ranks (similar shares under the Zipf spread): rank r's copy j goes
  to rank 10 * (r // 10) + (r + j) % 10, with that customer's `plan` / `region` meta, user ids
  and account domain. A small customer thus has usage on as many days as one with k times its
  records would, and the biggest keeps ~15 % of the records;
- conversation ids get `.<j>` (k times the conversations, ~8 calls each, as generated).

The rollups: `conversation_starts` is the base's, renamed the same way (the backfill would sort
every record by conversation to find it); the others come from the backfill statements.

The records' indexes are dropped while rows go in and made again after. Rows go in chunk by chunk of the base's seq order (all k copies of each chunk of 20,000 records
before the next chunk), so seq order stays time order to within a chunk (~2 hours of records at
1M), as when records arrive.
"""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from spanmeter.store.schema import COLUMNS
from spanmeter.store.sql import adoption_rollup, attention, model_rollup, rollup
from spanmeter.store.sqlite import SQLiteStore
from spanmeter.store.sqlite.key_hash import key_hash

CHUNK = 20_000
BLOCK = 10  # customers swap within blocks of this many ranks


def _copy_select(j: int) -> str:
    """The SELECT of copy j over `src.records r LEFT JOIN customer_map m` (copy 0: as stored)."""
    if j == 0:
        return f"SELECT {', '.join('r.' + c for c in COLUMNS)}, r.key_hash FROM src.records r"
    moved = "m.dst IS NOT NULL"
    short = "substr(m.dst, 5, 8)"  # the customer's id part in generated user / conversation ids
    changed = {
        "idempotency_key": f"r.idempotency_key || ':{j}'",
        "id": f"substr(r.id, 1, length(r.id) - 1) || '{j:x}'",
        "occurred_at": f"r.occurred_at + {j}",
        "received_at": f"r.received_at + {j}",
        "customer_id": f"CASE WHEN {moved} THEN m.dst ELSE r.customer_id END",
        "user_id": f"CASE WHEN {moved} AND r.user_id LIKE 'user\\_%' ESCAPE '\\'"
        f" THEN 'user_' || {short} || substr(r.user_id, 14) ELSE r.user_id END",
        "account_domain": f"CASE WHEN {moved} AND r.account_domain IS NOT NULL"
        f" THEN {short} || '.example.com' ELSE r.account_domain END",
        "conversation_id": f"CASE WHEN r.conversation_id IS NULL THEN NULL WHEN {moved}"
        f" THEN 'conv_' || {short} || substr(r.conversation_id, 14) || '.{j}'"
        f" ELSE r.conversation_id || '.{j}' END",
        # generated meta is exactly env, plan, region, stored as json.dumps(sort_keys=True) spells it
        "meta": f"CASE WHEN {moved} AND r.meta IS NOT NULL"
        f" THEN '{{\"env\": ' || json_quote(json_extract(r.meta, '$.env')) || ', \"plan\": '"
        f" || json_quote(m.plan) || ', \"region\": ' || json_quote(m.region) || '}}' ELSE r.meta END",
    }
    columns = ", ".join(changed.get(c, "r." + c) for c in COLUMNS)
    return (
        f"SELECT {columns}, spanmeter_key_hash(r.workspace, r.idempotency_key || ':{j}')"
        f" FROM src.records r LEFT JOIN customer_map m"
        f" ON m.copy = {j} AND m.workspace = r.workspace AND m.src = r.customer_id"
    )


def _conversations_select(j: int) -> str:
    """conversation_starts of copy j from the base's (see _copy_select)."""
    if j == 0:
        return "INSERT INTO main.conversation_starts SELECT * FROM src.conversation_starts"
    return (
        "INSERT INTO main.conversation_starts (workspace, conversation_id, customer_id, first_at, last_at)"
        " SELECT c.workspace, CASE WHEN m.dst IS NOT NULL"
        f" THEN 'conv_' || substr(m.dst, 5, 8) || substr(c.conversation_id, 14) || '.{j}'"
        f" ELSE c.conversation_id || '.{j}' END, COALESCE(m.dst, c.customer_id), c.first_at + {j}, c.last_at + {j}"
        " FROM src.conversation_starts c LEFT JOIN customer_map m"
        f" ON m.copy = {j} AND m.workspace = c.workspace AND m.src = c.customer_id"
    )


def _customer_map(conn: sqlite3.Connection, customers: dict[str, list[dict[str, Any]]], k: int) -> None:
    conn.execute(
        "CREATE TEMP TABLE customer_map (copy INTEGER, workspace TEXT, src TEXT, dst TEXT, plan TEXT,"
        " region TEXT, PRIMARY KEY (copy, workspace, src))"
    )
    rows = []
    for workspace, ranked in customers.items():
        for rank, customer in enumerate(ranked):
            if rank < BLOCK:
                continue
            for j in range(1, k):
                block = BLOCK * (rank // BLOCK)
                target = block + (rank - block + j) % BLOCK
                if target >= len(ranked):
                    continue
                dst = ranked[target]
                rows.append((j, workspace, customer["id"], dst["id"], dst["plan"], dst["region"]))
    conn.executemany("INSERT INTO customer_map VALUES (?, ?, ?, ?, ?, ?)", rows)


def scale(base: Path, target: Path, k: int, customers: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Build `target` with k copies of every record of `base`; returns build figures."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    SQLiteStore(target).migrate()  # the schema of this tree, empty rollups
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # a scratch build: a crash means rebuilding anyway
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1048576")  # 1 GiB: the key hash index stays in memory
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.create_function("spanmeter_key_hash", 2, key_hash, deterministic=True)
    conn.execute("ATTACH DATABASE ? AS src", [f"file:{base}?mode=ro"])
    _customer_map(conn, customers, k)
    # The records' indexes are made after the rows: one sort each, instead of 10M inserts at random
    # places (the first 10M build, with them in place, fell from 31k to 11k records/s).
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    [(low, high)] = conn.execute("SELECT MIN(seq), MAX(seq) FROM src.records").fetchall()
    insert = f"INSERT INTO main.records ({', '.join(COLUMNS)}, key_hash) "
    selects = [_copy_select(j) for j in range(k)]
    report = max((high - low) // 10, CHUNK)
    for start in range(low, high + 1, CHUNK):
        conn.execute("BEGIN")
        for select in selects:
            conn.execute(f"{insert}{select} WHERE r.seq >= ? AND r.seq < ? ORDER BY r.seq", [start, start + CHUNK])
        conn.execute("COMMIT")
        if (start - low) // report != (start - low + CHUNK) // report:
            done = (start - low + CHUNK) * k
            elapsed = time.perf_counter() - started
            print(f"  {done:>11,} records  {elapsed:6.0f} s  {done / elapsed:8,.0f} records/s", flush=True)
    phases = {"rows": time.perf_counter() - started}
    for _, sql in indexes:
        conn.execute(sql)
    phases["indexes"] = time.perf_counter() - started - sum(phases.values())
    inserted = time.perf_counter() - started
    conn.execute("BEGIN")
    # A copy's conversations are the base's, renamed like its records and j ns later: the same
    # rows the backfill's window functions would find, without sorting every record.
    for j in range(k):
        conn.execute(_conversations_select(j))
    phases["conversation_starts"] = time.perf_counter() - started - sum(phases.values())
    # The hourly event counts go in before the developers and accounts: their triggers count each
    # one's last event into its day's and hour's rows (store/sql/adoption_last_events.py).
    adoption = (adoption_rollup.BACKFILL[0], adoption_rollup.HOURLY_BACKFILL, *adoption_rollup.BACKFILL[1:])
    for n, statement in enumerate((*rollup.BACKFILL[1:], *adoption, *model_rollup.BACKFILL, *attention.BACKFILL)):
        conn.execute(statement)
        phases[f"backfill {n + 1}"] = time.perf_counter() - started - sum(phases.values())
    meters = conn.execute(
        "SELECT workspace, customer_id, occurred_at, meter, quantity FROM records WHERE kind = 'meter'"
    )
    rollup.add_meters(conn, ((w, c, at, m, Decimal(q)) for w, c, at, m, q in meters if q is not None))
    conn.execute("COMMIT")
    phases["meters"] = time.perf_counter() - started - sum(phases.values())
    print("  phases (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in phases.items()), flush=True)
    conn.execute("DETACH DATABASE src")
    conn.execute("PRAGMA journal_mode=WAL")
    [(count,)] = conn.execute("SELECT COUNT(*) FROM records").fetchall()
    conn.close()
    elapsed = time.perf_counter() - started
    return {
        "records": count,
        "seconds": round(elapsed, 1),
        "records_per_s": round(count / elapsed),
        "insert_seconds": round(inserted, 1),
        "rollup_seconds": round(elapsed - inserted, 1),
        "scaled_from": str(base.name),
        "copies": k,
    }


if __name__ == "__main__":  # python bench/scale_db.py BASE.db TARGET.db K (BASE.json beside BASE.db)
    import sys

    base_path, target_path, copies = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    info = json.loads(base_path.with_suffix(".json").read_text())
    print(scale(base_path, target_path, copies, info["customers"]))
