"""The PostgreSQL store (the `postgres` extra): several spanmeter instances on one database."""

from spanmeter.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
