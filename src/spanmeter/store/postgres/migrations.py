"""The PostgreSQL schema: named, versioned migrations, applied once however many instances start.

`spanmeter_migrations` lists the applied ones by name. `migrate` takes a transaction-level
advisory lock first, so of several instances starting together one applies what is missing
while the others wait, then find it applied; all of it in one transaction (PostgreSQL's DDL is
transactional): a failure leaves the database as it was.

The tables are those of the SQLite store (the same statements, built in PostgreSQL's dialect:
dialect.py). A migration added after the first release fills its table from the records already
stored (its backfill), as the SQLite migration of the same table does: a database created by an
older spanmeter gets the same numbers as a new one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Final

from spanmeter.store.postgres.connection import SqliteLike
from spanmeter.store.postgres.dialect import FUNCTIONS, MIGRATION_LOCK, POSTGRES
from spanmeter.store.schema import COLUMNS, NOT_NULL_COLUMNS, column_type
from spanmeter.store.sql import adoption_last_events, adoption_rollup, attention, model_rollup, rollup
from spanmeter.store.sql import outbox as sql_outbox

log = logging.getLogger(__name__)


def _m001_records(db: SqliteLike) -> None:
    columns = ", ".join(
        f"{c} {POSTGRES.integer if column_type(c) == 'INTEGER' else POSTGRES.text}"
        f"{' NOT NULL' if c in NOT_NULL_COLUMNS else ''}"
        for c in COLUMNS
    )
    # seq is the insertion order and the query API's cursor; records.py makes it the commit order.
    db.execute(
        f"CREATE TABLE records (seq {POSTGRES.integer} GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {columns},"
        " UNIQUE (workspace, idempotency_key))"
    )
    db.execute("CREATE INDEX records_occurred ON records (workspace, occurred_at)")
    db.execute("CREATE INDEX records_customer ON records (workspace, customer_id, seq)")
    db.execute("CREATE INDEX records_workspace ON records (workspace, seq)")
    db.execute(
        "CREATE INDEX records_conversation ON records (workspace, conversation_id) WHERE conversation_id IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX records_product_events ON records (workspace, occurred_at)"
        f" WHERE {adoption_rollup.PRODUCT_EVENTS}"
    )


def _m002_api_keys(db: SqliteLike) -> None:
    i, t = POSTGRES.integer, POSTGRES.text
    db.execute(
        f"CREATE TABLE api_keys (id {t} PRIMARY KEY, workspace {t} NOT NULL, name {t} NOT NULL,"
        f" prefix {t} NOT NULL, key_hash {t} NOT NULL UNIQUE, scopes {t} NOT NULL, state {t} NOT NULL,"
        f" created_at {i} NOT NULL, updated_at {i} NOT NULL, quota_records {i}, quota_cost_nano {i})"
    )
    # Signs query cursors; kept in the database so every instance on it accepts the others' cursors.
    db.execute(f"CREATE TABLE spanmeter_secrets (name {t} PRIMARY KEY, value {t} NOT NULL)")
    db.execute("INSERT INTO spanmeter_secrets VALUES ('cursor', ?)", [os.urandom(32).hex()])


def _m003_rollups(db: SqliteLike) -> None:
    for statement in (*rollup.schema(POSTGRES), rollup.meter_schema(POSTGRES), *adoption_rollup.schema(POSTGRES)):
        db.execute(statement)
    db.execute(
        "CREATE INDEX usage_daily_by_day ON usage_daily (workspace, day, customer_id, cost_nano, tokens,"
        " input_tokens, output_tokens, messages, events, meters)"
    )


def _m004_outbox(db: SqliteLike) -> None:
    for statement in (*sql_outbox.schema(POSTGRES), *sql_outbox.counts_schema(POSTGRES)):
        db.execute(statement)


def _m005_functions(db: SqliteLike) -> None:
    for statement in FUNCTIONS:
        db.conn.execute(statement)


def _m006_attention_counts(db: SqliteLike) -> None:
    # The dashboard's unknown-model and rejected-span counts, kept across restarts
    # (store/sql/attention.py); unknown-model records already stored are counted once here.
    for statement in (*attention.schema(POSTGRES), *attention.BACKFILL):
        db.execute(statement)


def _m007_usage_daily_model(db: SqliteLike) -> None:
    # Meter queries by model, provider or kind from daily rollups (store/sql/model_rollup.py),
    # filled from the records already stored (one pass over them).
    for statement in (*model_rollup.schema(POSTGRES), *model_rollup.BACKFILL):
        db.execute(statement)


def _m008_adoption_histogram(db: SqliteLike) -> None:
    # As SQLite's m016: hourly event counts and per-day and per-hour counts of last events
    # (store/sql/adoption_last_events.py), their triggers as PL/pgSQL. The triggers go first:
    # creating them locks the two tables against writers until this transaction commits, so no
    # write falls between the backfill and the triggers.
    for statement in (adoption_rollup.hourly_schema(POSTGRES), *adoption_last_events.schema(POSTGRES)):
        db.execute(statement)
    for statement in _adoption_histogram_triggers():
        db.conn.execute(statement)
    for statement in (adoption_rollup.HOURLY_BACKFILL, *adoption_last_events.BACKFILL):
        db.execute(statement)


def _m009_exporter_skips(db: SqliteLike) -> None:
    # As SQLite's m017: records exporters left out unsent, per reason (store/sql/outbox.py).
    for statement in sql_outbox.skips_schema(POSTGRES):
        db.execute(statement)


def _adoption_histogram_triggers() -> list[str]:
    """SQLite's adoption_last_events.TRIGGERS in PostgreSQL: one function per table, called after an
    insert (OLD is NULL) and after an update that moved a time to another hour."""
    statements = []
    for source in adoption_last_events.SOURCES:
        moves = adoption_last_events.moves(
            source, inserted=False, distinct="IS DISTINCT FROM", conflict="ON CONFLICT (workspace, {unit}, product, category)"
        )
        function = f"spanmeter_{source}_moved"
        moved = adoption_last_events.any_hour_moved(source, "IS DISTINCT FROM")
        statements += [
            (
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {'; '.join(moves)};"
                " RETURN NULL; END $$"
            ),
            f"CREATE TRIGGER {source}_added AFTER INSERT ON {source} FOR EACH ROW EXECUTE FUNCTION {function}()",
            (
                f"CREATE TRIGGER {source}_moved AFTER UPDATE ON {source} FOR EACH ROW WHEN ({moved})"
                f" EXECUTE FUNCTION {function}()"
            ),
        ]
    return statements


MIGRATIONS: Final[tuple[tuple[str, Callable[[SqliteLike], None]], ...]] = (
    ("m001_records", _m001_records),
    ("m002_api_keys", _m002_api_keys),
    ("m003_rollups", _m003_rollups),
    ("m004_outbox", _m004_outbox),
    ("m005_functions", _m005_functions),
    ("m006_attention_counts", _m006_attention_counts),
    ("m007_usage_daily_model", _m007_usage_daily_model),
    ("m008_adoption_histogram", _m008_adoption_histogram),
    ("m009_exporter_skips", _m009_exporter_skips),
)


def migrate(db: SqliteLike) -> list[str]:
    """Apply the migrations not applied yet, under the migration lock; their names."""
    db.conn.execute("BEGIN")
    try:
        db.conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        db.conn.execute(
            "CREATE TABLE IF NOT EXISTS spanmeter_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        applied = {name for (name,) in db.conn.execute("SELECT name FROM spanmeter_migrations")}
        pending = [(name, step) for name, step in MIGRATIONS if name not in applied]
        started = time.monotonic()
        for name, step in pending:
            step(db)
            db.conn.execute("INSERT INTO spanmeter_migrations VALUES (%s, %s)", [name, time.time_ns()])
        db.conn.execute("COMMIT")
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    if pending:
        log.info("applied %d PostgreSQL migration(s) in %.1f s", len(pending), time.monotonic() - started)
    return [name for name, _ in pending]
