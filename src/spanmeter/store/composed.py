"""The reading, key and outbox side of a store, forwarded to its parts: shared by the backends.

A backend's store holds four parts (the SQLite backend's classes, which the PostgreSQL backend
reuses over its own connections): `queries` (record pages, series, totals, adoption rows),
`aggregates` (meter queries), `keys` (API keys) and `outbox` (exporters' positions and claims).
This class is the protocols of store/port.py over them, and the record writes and writer state
over the backend's `writer` (its write queue, store/write_queue.py); a backend adds the rest of
its lifecycle.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from spanmeter.errors import Overloaded
from spanmeter.record import UsageRecord
from spanmeter.store.aggregate import AggregateQuery, AggregateResult
from spanmeter.store.base import RecordFilter, Rejected, WriteResult
from spanmeter.store.outbox import (
    Claim,
    Delivery,
    ExporterState,
    ExportFilter,
    ItemOf,
    NotDue,
    Requeued,
    Skipped,
    StartAt,
)
from spanmeter.store.queries import (
    ApiKey,
    CsvLine,
    CsvLines,
    DailyTotals,
    PeriodTotals,
    ProductAdoption,
    RecordQuery,
    UnknownModel,
)
from spanmeter.store.write_queue import WriteQueue

if TYPE_CHECKING:  # the parts' classes
    from spanmeter.store.sql.aggregate import SQLAggregate
    from spanmeter.store.sql.api_keys import SQLKeys
    from spanmeter.store.sql.outbox import SQLOutbox
    from spanmeter.store.sql.queries import SQLQueries

T = TypeVar("T")


class BackendWriter(Protocol):
    """What the store reads of a backend's writer thread."""

    queue: WriteQueue[Any]
    failure: str | None  # why writes fail now (a StorageError message), None while they succeed
    failure_reason: str | None

    def transaction(self, fn: Callable[[Any], T]) -> T:
        """Run `fn` on the backend's connection in a write transaction (blocking)."""
        ...


class ComposedStore(abc.ABC):
    writer: BackendWriter
    queries: SQLQueries
    aggregates: SQLAggregate
    keys: SQLKeys
    outbox: SQLOutbox

    # --- records and the writer's state --------------------------------------------------------
    @property
    def queued(self) -> int:
        return self.writer.queue.queued

    @property
    def failure(self) -> str | None:
        return self.writer.failure

    @property
    def failure_reason(self) -> str | None:
        return self.writer.failure_reason

    def overloaded(self) -> Overloaded | None:
        return self.writer.queue.overloaded()

    async def write(self, records: list[UsageRecord], rejected: Rejected | None = None) -> WriteResult:
        return await self.writer.queue.write(records, rejected)

    # --- attention counts (store/port.py AttentionCounts) -------------------------------------
    async def count_rejected(self, workspace: str, spans: int) -> None:
        """Add refused spans to the stored count (store/sql/attention.py): a write without records,
        in the writer's next transaction, as those of a request with records are."""
        await self.writer.queue.write([], Rejected(workspace, spans))

    def attention_counts(self, workspace: str) -> dict[str, int]:
        from spanmeter.store.sql import attention

        return attention.read_counts(self._fetch, workspace)

    @abc.abstractmethod
    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Every read query of the parts (each backend reads on its own connections)."""

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

    def query_csv_lines(self, query: RecordQuery, line: CsvLine) -> CsvLines | None:
        return self.queries.query_csv_lines(query, line)

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

    def delivered(self, claim: Claim, owner: str, now_ns: int, skipped: Sequence[Skipped] = ()) -> None:
        self.outbox.delivered(claim, owner, now_ns, skipped)

    def progress(
        self,
        claim: Claim,
        owner: str,
        now_ns: int,
        done: int,
        dead: Mapping[int, str],
        lease_ns: int = 0,
        skipped: Sequence[Skipped] = (),
    ) -> Claim:
        return self.outbox.progress(claim, owner, now_ns, done, dead, lease_ns, skipped)

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
