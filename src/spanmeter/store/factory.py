"""`open_store`: the configured backend's store."""

from __future__ import annotations

from spanmeter.config import Config
from spanmeter.store.port import Store


def open_store(config: Config) -> Store:
    """The store that `config.storage` names, not started yet (`start` migrates and opens it;
    the CLI calls `migrate` alone): PostgreSQL when `storage::postgres` is set, else SQLite."""
    if (postgres := config.storage.postgres) is not None:
        from spanmeter.store.postgres import PostgresStore  # the postgres extra: imported only when used

        return PostgresStore(
            postgres.dsn,
            pool_size=postgres.pool_size,
            max_queued_records=postgres.max_queued_records,
            connect_timeout=postgres.connect_timeout,
        )
    from spanmeter.store.sqlite import SQLiteStore  # imported on use: a backend loads only when chosen

    sqlite = config.storage.sqlite
    return SQLiteStore(
        sqlite.path,
        synchronous=sqlite.synchronous.upper(),
        max_queued_records=sqlite.max_queued_records,
        busy_timeout=sqlite.busy_timeout,
        cache_mb=sqlite.cache_mb,
    )
