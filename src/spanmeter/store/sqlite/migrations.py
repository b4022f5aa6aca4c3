"""The SQLite schema's migrations: named, applied once each, in the order they are declared.

Their names and order are part of every existing database (sqlite-utils records the applied ones
in `_sqlite_migrations`): a new one is appended, never renamed or moved.
"""

from __future__ import annotations

import logging
import os
import time
from decimal import Decimal
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from spanmeter.store.schema import COLUMNS, NOT_NULL_COLUMNS, column_type
from spanmeter.store.sql import adoption_last_events, adoption_rollup, attention, model_rollup, outbox, rollup
from spanmeter.store.sqlite import key_hash
from spanmeter.store.sqlite.connection import connect
from spanmeter.store.sqlite.dialect import SQLITE

log = logging.getLogger(__name__)

migrations = Migrations("spanmeter")


@migrations(name="m001_records")
def _m001_records(db: sqlite_utils.Database) -> None:
    db.table("records").create(
        {"seq": int, **{c: int if column_type(c) == "INTEGER" else str for c in COLUMNS}},
        pk="seq",
        not_null=NOT_NULL_COLUMNS,
    )
    db.execute("CREATE UNIQUE INDEX records_key ON records (workspace, idempotency_key)")
    db.execute("CREATE INDEX records_occurred ON records (workspace, occurred_at)")
    db.execute("CREATE INDEX records_customer ON records (workspace, customer_id, seq)")


@migrations(name="m002_query_indexes")
def _m002_query_indexes(db: sqlite_utils.Database) -> None:
    # Pages of the query API walk seq (the rowid, implicit at the end of each index) per workspace.
    db.execute("CREATE INDEX records_workspace ON records (workspace)")
    db.execute("CREATE INDEX records_type ON records (workspace, type)")
    db.execute(
        "CREATE INDEX records_conversation ON records (workspace, conversation_id) WHERE conversation_id IS NOT NULL"
    )
    # meta[key]=value filters: one row per meta entry, kept by a trigger so the hot path is unchanged.
    db.execute(
        "CREATE TABLE record_meta (workspace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " seq INTEGER NOT NULL, PRIMARY KEY (workspace, key, value, seq)) WITHOUT ROWID"
    )
    select_meta = (
        "SELECT {r}.workspace, j.key, COALESCE(CAST(j.value AS TEXT), ''), {r}.seq FROM json_each({r}.meta) AS j"
    )
    db.execute(
        "CREATE TRIGGER records_meta_insert AFTER INSERT ON records"
        " WHEN NEW.meta IS NOT NULL AND json_valid(NEW.meta) BEGIN"
        f" INSERT OR IGNORE INTO record_meta (workspace, key, value, seq) {select_meta.format(r='NEW')}; END"
    )
    db.execute(
        "INSERT OR IGNORE INTO record_meta (workspace, key, value, seq) "
        + select_meta.format(r="records").replace("FROM json_each", "FROM records, json_each")
        + " WHERE records.meta IS NOT NULL AND json_valid(records.meta)"
    )


@migrations(name="m003_api_keys")
def _m003_api_keys(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL,"
        " prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL, state TEXT NOT NULL,"
        " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)"
    )
    # Signs query cursors; kept in the database so every instance on it accepts the others' cursors.
    db.execute("CREATE TABLE spanmeter_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO spanmeter_secrets VALUES ('cursor', ?)", [os.urandom(32).hex()])


@migrations(name="m004_lighter_query_indexes")
def _m004_lighter_query_indexes(db: sqlite_utils.Database) -> None:
    # Measured on the write path: the record_meta trigger cut SQLite ingest by ~70% for records with
    # meta, and records_type ~5%. Meta filters now read json_extract in seq order (dense values stop
    # early); type is low-cardinality, so a page finds its rows in the seq scan just as quickly.
    db.execute("DROP TRIGGER IF EXISTS records_meta_insert")
    db.execute("DROP TABLE IF EXISTS record_meta")
    db.execute("DROP INDEX IF EXISTS records_type")


@migrations(name="m005_daily_rollups")
def _m005_daily_rollups(db: sqlite_utils.Database) -> None:
    for statement in (*rollup.schema(SQLITE), *rollup.BACKFILL):
        db.execute(statement)


@migrations(name="m006_product_events_index")
def _m006_product_events_index(db: sqlite_utils.Database) -> None:
    # Adoption rows read 30 days of product events only (~1 record in 10): a partial index keeps
    # them apart, and costs nothing on the ingest of LLM calls.
    db.execute(
        "CREATE INDEX records_product_events ON records (workspace, occurred_at)"
        " WHERE kind = 'event' AND (product_id IS NOT NULL OR product_name IS NOT NULL)"
    )


@migrations(name="m007_key_hash")
def _m007_key_hash(db: sqlite_utils.Database) -> None:
    # (workspace, idempotency_key) stays unique through a UNIQUE index of its 64-bit hash.
    db.conn.create_function("spanmeter_key_hash", 2, key_hash.key_hash, deterministic=True)
    db.execute("ALTER TABLE records ADD COLUMN key_hash INTEGER")
    db.execute("UPDATE records SET key_hash = spanmeter_key_hash(workspace, idempotency_key)")
    colliding = db.execute("SELECT key_hash FROM records GROUP BY key_hash HAVING COUNT(*) > 1").fetchall()
    for (taken,) in colliding:  # the later records of a shared hash move to their next free probe
        rows = db.execute("SELECT seq, workspace, idempotency_key FROM records WHERE key_hash = ? ORDER BY seq", [taken])
        for seq, workspace, key in rows.fetchall()[1:]:
            probe = 1
            while db.execute("SELECT 1 FROM records WHERE key_hash = ?", [key_hash.key_hash(workspace, key, probe)]).fetchone():
                probe += 1
            db.execute("UPDATE records SET key_hash = ? WHERE seq = ?", [key_hash.key_hash(workspace, key, probe), seq])
    db.execute("CREATE UNIQUE INDEX records_key_hash ON records (key_hash)")
    db.execute("DROP INDEX records_key")


@migrations(name="m008_outbox")
def _m008_outbox(db: sqlite_utils.Database) -> None:
    for statement in outbox.schema(SQLITE):
        db.execute(statement)


@migrations(name="m009_meter_rollup")
def _m009_meter_rollup(db: sqlite_utils.Database) -> None:
    # Each meter's quantity per day, for the snapshot; filled from the meter records already stored.
    db.execute(rollup.meter_schema(SQLITE))
    stored = db.execute(
        "SELECT workspace, customer_id, occurred_at, meter, quantity FROM records WHERE kind = 'meter'"
    ).fetchall()
    rollup.add_meters(db.conn, ((w, c, at, m, Decimal(q)) for w, c, at, m, q in stored if q is not None))


@migrations(name="m010_key_quotas")
def _m010_key_quotas(db: sqlite_utils.Database) -> None:
    # A key's monthly quota (store/queries.py ApiKey); NULL: no limit of that kind.
    db.execute("ALTER TABLE api_keys ADD COLUMN quota_records INTEGER")
    db.execute("ALTER TABLE api_keys ADD COLUMN quota_cost_nano INTEGER")


@migrations(name="m013_exporter_counts")
def _m013_exporter_counts(db: sqlite_utils.Database) -> None:
    for statement in outbox.counts_schema(SQLITE):
        db.execute(statement)


@migrations(name="m011_adoption_rollups")
def _m011_adoption_rollups(db: sqlite_utils.Database) -> None:
    # The public adoption rows from rollups (store/sql/adoption_rollup.py), filled from stored events.
    for statement in (*adoption_rollup.schema(SQLITE), *adoption_rollup.BACKFILL):
        db.execute(statement)


@migrations(name="m012_usage_daily_by_day")
def _m012_usage_daily_by_day(db: sqlite_utils.Database) -> None:
    # Meter queries read a range of days for every customer (30 days x 2,000 customers): in day
    # order, covered, instead of every day of every customer of the workspace, sorted.
    db.execute(
        "CREATE INDEX usage_daily_by_day ON usage_daily (workspace, day, customer_id, cost_nano, tokens,"
        " input_tokens, output_tokens, messages, events, meters)"
    )


@migrations(name="m014_attention_counts")
def _m014_attention_counts(db: sqlite_utils.Database) -> None:
    # The dashboard's unknown-model and rejected-span counts, kept across restarts
    # (store/sql/attention.py); unknown-model records already stored are counted once here.
    for statement in (*attention.schema(SQLITE), *attention.BACKFILL):
        db.execute(statement)


@migrations(name="m015_usage_daily_model")
def _m015_usage_daily_model(db: sqlite_utils.Database) -> None:
    # Meter queries by model, provider or kind from daily rollups (store/sql/model_rollup.py),
    # filled from the records already stored (one pass over them).
    for statement in (*model_rollup.schema(SQLITE), *model_rollup.BACKFILL):
        db.execute(statement)


@migrations(name="m016_adoption_histogram")
def _m016_adoption_histogram(db: sqlite_utils.Database) -> None:
    # The adoption rows from per-day and per-hour counts of last events instead of every developer
    # of a workspace (store/sql/adoption_last_events.py): hourly event counts from the stored
    # events, last-event counts from adoption_developers and adoption_accounts, then the triggers.
    for statement in (
        adoption_rollup.hourly_schema(SQLITE),
        *adoption_last_events.schema(SQLITE),
        adoption_rollup.HOURLY_BACKFILL,
        *adoption_last_events.BACKFILL,
        *adoption_last_events.TRIGGERS,
    ):
        db.execute(statement)


@migrations(name="m017_exporter_skips")
def _m017_exporter_skips(db: sqlite_utils.Database) -> None:
    # Records exporters left out unsent (e.g. no Fluxrate meter token), per reason, for
    # `spanmeter exporters status`; none were stored before.
    for statement in outbox.skips_schema(SQLITE):
        db.execute(statement)


def migrate(path: Path, *, timeout: float) -> None:
    """Create the database if need be, and apply the migrations it has not had yet."""
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, timeout=timeout)
    try:
        db = sqlite_utils.Database(conn)
        pending = [m.name for m in migrations.pending(db)]
        if pending and db["records"].exists():
            # Backfills read every stored record: minutes at tens of millions (m005: 168 s at 10M).
            log.info("upgrading %s: applying %s; this can take a while on a large database", path, ", ".join(pending))
        started = time.monotonic()
        migrations.apply(db)
        if pending:
            log.info("applied %d migration(s) in %.1f s", len(pending), time.monotonic() - started)
    finally:
        conn.close()
