"""SQLiteStore: the embedded default backend, composed of its parts.

    writer.py       the writer thread: records, and every other part's writes, in its transactions
    checkpoints.py  the WAL copied into the database beside the writer, and kept bounded
    migrations.py   the schema's named migrations
    readers.py      the read connections
    queries.py      record pages, series, totals, adoption rows (the query API, the CLI)
    aggregate.py    meter queries (aggregate_json.py: rollup answers as JSON)
    attention.py    the stored unknown-model and rejected-span counts
    api_keys.py     API keys and quotas
    outbox.py       the exporters' positions, claims and dead deliveries

Each part is an object of its own; this class holds them and is what the rest of spanmeter sees,
through the protocols of store/port.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from spanmeter.errors import Overloaded, StorageError
from spanmeter.record import UsageRecord
from spanmeter.store.aggregate import AggregateQuery, AggregateResult
from spanmeter.store.base import RecordFilter, WriteResult
from spanmeter.store.outbox import (
    Claim,
    Delivery,
    ExporterState,
    ExportFilter,
    ItemOf,
    NotDue,
    Requeued,
    StartAt,
)
from spanmeter.store.queries import (
    ApiKey,
    DailyTotals,
    PeriodTotals,
    ProductAdoption,
    RecordQuery,
    UnknownModel,
)
from spanmeter.store.sqlite import attention
from spanmeter.store.sqlite.aggregate import SQLiteAggregate
from spanmeter.store.sqlite.api_keys import SQLiteKeys
from spanmeter.store.sqlite.checkpoints import Checkpoints
from spanmeter.store.sqlite.errors import error_reason
from spanmeter.store.sqlite.migrations import migrate
from spanmeter.store.sqlite.outbox import SQLiteOutbox
from spanmeter.store.sqlite.queries import SQLiteQueries
from spanmeter.store.sqlite.readers import Readers
from spanmeter.store.sqlite.writer import Writer

T = TypeVar("T")


class SQLiteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        max_queued_records: int = 200_000,
        busy_timeout: float = 5.0,
        retry_after: float = 1.0,
        cache_mb: int = 32,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpoints = Checkpoints(self.path, busy_timeout)
        self.writer = Writer(
            self.path,
            self.checkpoints,
            synchronous=synchronous,
            max_queued_records=max_queued_records,
            busy_timeout=busy_timeout,
            retry_after=retry_after,
            cache_mb=cache_mb,
        )
        self.readers = Readers(self.path, busy_timeout)
        self.queries = SQLiteQueries(self._fetch)
        self.aggregates = SQLiteAggregate(self._fetch, self.readers.connection)
        self.keys = SQLiteKeys(self.path, busy_timeout, self._fetch)
        self.outbox = SQLiteOutbox(self.path, busy_timeout, self.writer.transaction)

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Every read query of the parts, on a read connection (one place to observe them all)."""
        return self.readers.fetch(sql, params)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def migrate(self) -> None:
        migrate(self.path, timeout=self.busy_timeout)

    async def start(self) -> None:
        """Open (creating it if need be) and migrate the database, and check that a write commits:
        a store that cannot write refuses to start, with a StorageError saying why."""
        try:
            await asyncio.to_thread(self.migrate)
        except (OSError, sqlite3.Error) as error:
            raise StorageError(f"cannot open the database {self.path}: {error}", error_reason(error) or "other") from None
        try:
            await asyncio.to_thread(self.writer.check_writable)
        except StorageError as error:
            raise StorageError(
                f"cannot write the database {self.path}: {str(error).removeprefix('storage write failed: ')}", error.reason
            ) from None
        self.writer.start()
        self.checkpoints.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.checkpoints.stop)
        self.readers.close()
        self.outbox.close()

    @property
    def queued(self) -> int:
        return self.writer.queued

    @property
    def failure(self) -> str | None:
        return self.writer.failure

    @property
    def failure_reason(self) -> str | None:
        return self.writer.failure_reason

    @property
    def synchronous(self) -> str:
        return self.writer.synchronous

    @property
    def cache_mb(self) -> int:
        return self.writer.cache_mb

    def check_writable(self) -> None:
        self.writer.check_writable()

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction (blocking): the writer's next one while it runs."""
        return self.writer.transaction(fn)

    # --- records -----------------------------------------------------------------------------
    def overloaded(self) -> Overloaded | None:
        return self.writer.overloaded()

    async def write(self, records: list[UsageRecord]) -> WriteResult:
        return await self.writer.write(records)

    # --- attention counts (store/port.py AttentionCounts) -------------------------------------
    async def count_rejected(self, workspace: str, spans: int) -> None:
        """Add refused spans to the stored count (attention.py), in a writer transaction."""
        await asyncio.to_thread(
            self.writer.transaction,
            lambda conn: attention.add_counts(conn, [(workspace, attention.REJECTED_SPANS, spans)]),
        )

    def attention_counts(self, workspace: str) -> dict[str, int]:
        with self.readers.connection() as conn:
            return attention.read_counts(conn, workspace)

    # --- queries -----------------------------------------------------------------------------
    def recent(self, where: RecordFilter, limit: int) -> list[UsageRecord]:
        return self.queries.recent(where, limit)

    def workspaces(self) -> list[str]:
        return self.queries.workspaces()

    def unknown_models(self, workspace: str, since_ns: int | None = None) -> list[UnknownModel]:
        return self.queries.unknown_models(workspace, since_ns)

    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        return self.queries.find_record_id(workspace, idempotency_key)

    def query_records(self, query: RecordQuery) -> list[tuple[int, UsageRecord]]:
        return self.queries.query_records(query)

    def query_columns(self, query: RecordQuery, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        return self.queries.query_columns(query, columns)

    def query_items(self, query: RecordQuery, item_of: Callable[[UsageRecord], str]) -> list[tuple[int, str]]:
        return self.queries.query_items(query, item_of)

    def daily_totals(self, workspace: str, customer: str | None, start_ns: int, end_ns: int) -> list[DailyTotals]:
        return self.queries.daily_totals(workspace, customer, start_ns, end_ns)

    def new_conversations(self, workspace: str, customer: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        return self.queries.new_conversations(workspace, customer, start_ns, end_ns)

    def period_totals(self, workspace: str, customer: str | None, start_ns: int, end_ns: int) -> PeriodTotals:
        return self.queries.period_totals(workspace, customer, start_ns, end_ns)

    def records_and_cost(self, workspace: str, start_ns: int, end_ns: int) -> tuple[int, int]:
        return self.queries.records_and_cost(workspace, start_ns, end_ns)

    def product_adoption(self, workspace: str, since_ns: int, category: str | None) -> list[ProductAdoption]:
        return self.queries.product_adoption(workspace, since_ns, category)

    def cursor_secret(self) -> bytes:
        return self.queries.cursor_secret()

    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        return self.aggregates.aggregate(query)

    # --- API keys ----------------------------------------------------------------------------
    def create_key(self, key: ApiKey) -> None:
        self.keys.create_key(key)

    def find_key(self, key_hash: str) -> ApiKey | None:
        return self.keys.find_key(key_hash)

    def list_keys(self, workspace: str | None = None) -> list[ApiKey]:
        return self.keys.list_keys(workspace)

    def set_key_state(self, key_id: str, state: str) -> ApiKey:
        return self.keys.set_key_state(key_id, state)

    def set_key_quota(self, key_id: str, records: int | None, cost_nano: int | None) -> ApiKey:
        return self.keys.set_key_quota(key_id, records, cost_nano)

    # --- outbox ------------------------------------------------------------------------------
    def register_exporter(self, exporter: str, start_at: StartAt) -> int:
        return self.outbox.register_exporter(exporter, start_at)

    def claim(
        self,
        exporter: str,
        where: ExportFilter,
        limit: int,
        owner: str,
        now_ns: int,
        lease_ns: int,
        item_of: ItemOf | None = None,
    ) -> Claim | NotDue | None:
        return self.outbox.claim(exporter, where, limit, owner, now_ns, lease_ns, item_of)

    def delivered(self, claim: Claim, owner: str, now_ns: int) -> None:
        self.outbox.delivered(claim, owner, now_ns)

    def progress(
        self, claim: Claim, owner: str, now_ns: int, done: int, dead: Mapping[int, str], lease_ns: int = 0
    ) -> Claim:
        return self.outbox.progress(claim, owner, now_ns, done, dead, lease_ns)

    def retry_later(
        self, claim: Claim, owner: str, now_ns: int, at_ns: int, reason: str, *, counts_toward_give_up: bool = True
    ) -> None:
        self.outbox.retry_later(claim, owner, now_ns, at_ns, reason, counts_toward_give_up=counts_toward_give_up)

    def dead(self, claim: Claim, owner: str, now_ns: int, reason: str) -> None:
        self.outbox.dead(claim, owner, now_ns, reason)

    def release(self, exporter: str, owner: str) -> None:
        self.outbox.release(exporter, owner)

    def deliveries(
        self, exporter: str | None, state: str | None, limit: int, filters: Mapping[str, ExportFilter] | None = None
    ) -> list[Delivery]:
        return self.outbox.deliveries(exporter, state, limit, filters)

    def requeue_dead(self, exporter: str | None, record_ids: list[str] | None) -> Requeued:
        return self.outbox.requeue_dead(exporter, record_ids)

    def exporter_states(self, filters: Mapping[str, ExportFilter] | None = None) -> list[ExporterState]:
        return self.outbox.exporter_states(filters)
