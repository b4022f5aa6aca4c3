"""The store's port: every protocol a storage backend implements, lifecycle included.

spanmeter's other parts (the app, the CLI, the receivers, the query API, the exporters) are typed
against these protocols only; a backend is one package under `spanmeter.store` (today `sqlite/`)
whose store class implements `Store`, and `open_store` (factory.py) picks it from the config.

What a backend guarantees, whichever it is:
- `RecordStore.write` commits before it returns: an acknowledged record survives a crash. One
  record per `(workspace, idempotency_key)`: a later one is a duplicate (a conflict when its
  content differs), never a second row. Failures of the database raise StorageError (retryable),
  a full write queue Overloaded, a request that can never fit TooManyRecords (errors.py).
- Every stored record has a `seq`, its position in commit order: the query API's cursors and the
  exporters' positions are seqs, and a reader never passes a record that is not visible yet.
- The outbox hands each record to each exporter once (outbox.py); exporters' claims are leased.
- Types crossing the port are backend-neutral (base.py, queries.py, aggregate.py, outbox.py),
  as are the shared constants (constants.py) and the errors (errors.py, outbox.LeaseLost).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

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


class Lifecycle(Protocol):
    """Opening, migrating and closing the database, and its health."""

    @property
    def location(self) -> str:
        """Where the records are (a file path, a database address without its password): for logs."""
        ...

    def exists(self) -> bool:
        """Whether the database is there already (the CLI's read commands refuse to create one)."""
        ...

    def migrate(self) -> None:
        """Create the database if need be and apply the migrations it lacks (blocking)."""
        ...

    async def start(self) -> None:
        """Migrate, check that a write commits (StorageError saying why not), and start writing."""
        ...

    async def close(self) -> None:
        """Finish queued writes, then release the database. Safe without start."""
        ...

    @property
    def queued(self) -> int:
        """Records accepted and not committed yet (a gauge)."""
        ...

    @property
    def failure(self) -> str | None:
        """Why writes fail now (a StorageError message), None while they succeed: /readyz says it."""
        ...


class RecordStore(Protocol):
    """What the receivers need: storing records."""

    def overloaded(self) -> Overloaded | None:
        """The error to refuse a request with while the write queue is full, else None (cheap)."""
        ...

    async def write(self, records: list[UsageRecord], rejected: Rejected | None = None) -> WriteResult:
        """Commit the records (idempotently) before returning; raises StorageError / Overloaded.
        The request's `rejected` spans, and the records the store refuses (`WriteResult.refused`),
        are added to the stored count of rejected spans in the same transaction: both or neither."""
        ...


class QueryStore(Protocol):
    """The reads of the query API and the CLI."""

    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        """The id of the record stored under this idempotency key, if any."""
        ...

    def query_records(self, query: RecordQuery) -> list[tuple[int, UsageRecord]]:
        """Up to `query.limit` (seq, record) pairs in `query.order` of seq."""
        ...

    def query_columns(self, query: RecordQuery, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The same page as (seq, *values) rows of the named stored columns (store/schema.py
        COLUMNS: money in nano-USD, quantity a decimal string): for exports that read millions of
        records and need a few fields, without building each UsageRecord."""
        ...

    def query_items(self, query: RecordQuery, item_of: Callable[[UsageRecord], str]) -> list[tuple[int, str]]:
        """The same page as (seq, item JSON text) pairs: built by the database where it can
        (the SQLite backend: store/sqlite/item_sql.py), by `item_of` where it cannot."""
        ...

    def query_csv_lines(self, query: RecordQuery, line: CsvLine) -> CsvLines | None:
        """The same page, of the records `line.where` selects, as CSV lines (CsvLines). None:
        this backend writes no lines (the caller writes them all)."""
        ...

    def daily_totals(
        self, workspace: str, customer: str | None, start_ns: int, end_ns: int
    ) -> list[DailyTotals]:
        """Per UTC day of occurred_at in [start_ns, end_ns): tokens and messages of LLM records, cost."""
        ...

    def new_conversations(
        self, workspace: str, customer: str | None, start_ns: int, end_ns: int
    ) -> dict[int, int]:
        """Per UTC day: conversations whose first record occurred that day, within [start_ns, end_ns)."""
        ...

    def period_totals(
        self, workspace: str, customer: str | None, start_ns: int, end_ns: int
    ) -> PeriodTotals: ...

    def records_and_cost(self, workspace: str, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Records of every kind and their cost in nano-USD, of whole UTC days in [start_ns, end_ns)
        (the daily rollups: a few rows): what API-key quotas count."""
        ...

    def product_adoption(
        self, workspace: str, since_ns: int, category: str | None
    ) -> list[ProductAdoption]: ...

    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        """Meter query rows (aggregate.py); TooManyRows past query.max_rows."""
        ...

    def recent(self, where: RecordFilter, limit: int) -> list[UsageRecord]:
        """The records that occurred last, newest first by `occurred_at` (the CLI's `records`)."""
        ...

    def workspaces(self) -> list[str]:
        """The workspaces that hold records."""
        ...

    def unknown_models(self, workspace: str, since_ns: int | None = None) -> list[UnknownModel]:
        """Models that could not be priced, with their records' counts (the CLI's `unknown-models`)."""
        ...

    def cursor_secret(self) -> bytes:
        """A random secret kept in the database, so every instance on it signs cursors alike."""
        ...


class KeyStore(Protocol):
    """API keys and their quotas."""

    def create_key(self, key: ApiKey) -> None: ...

    def find_key(self, key_hash: str) -> ApiKey | None: ...

    def list_keys(self, workspace: str | None = None) -> list[ApiKey]: ...

    def set_key_state(self, key_id: str, state: str) -> ApiKey:
        """Raises KeyError for an unknown id, ValueError when a revoked key would change."""
        ...

    def set_key_quota(self, key_id: str, records: int | None, cost_nano: int | None) -> ApiKey:
        """Replace the key's monthly quota (None: no limit of that kind); KeyError for an unknown id."""
        ...


class Outbox(Protocol):
    """The exporters' side of the store (outbox.py says how a record becomes a delivery).

    A change made with an `owner` is made only while that owner holds the exporter's lease, else
    it raises LeaseLost; `release` raises StorageError when the database cannot be reached."""

    def register_exporter(self, exporter: str, start_at: StartAt) -> int:
        """Create the exporter's position if new (at the newest record, or before the first); returns it."""
        ...

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
        """The next batch to send (None: nothing pending). Takes or renews the exporter's lease.
        With `item_of`, the batch carries item JSON texts (built by the store, by `item_of` where
        it cannot), else UsageRecords."""
        ...

    def delivered(self, claim: Claim, owner: str, now_ns: int, skipped: Sequence[Skipped] = ()) -> None:
        """Settle the whole claim: delivered, but the `skipped` records (left out unsent, counted per
        reason in the same transaction)."""
        ...

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
        """Settle the claim's first `done` records for good, before anything else is sent: delivered,
        except those at the indexes in `dead` (dead deliveries with that reason) and the `skipped`
        ones among them (counted per reason, in the same transaction). Returns the rest of the
        claim, still claimed (and the lease renewed for `lease_ns`): after a restart the next claim
        is that rest, never the settled head. This is how targets without idempotency keys never
        get a record twice."""
        ...

    def retry_later(
        self, claim: Claim, owner: str, now_ns: int, at_ns: int, reason: str, *, counts_toward_give_up: bool = True
    ) -> None:
        """Keep the batch for another attempt at `at_ns`. `counts_toward_give_up`: the attempt is a
        passing failure, timed against max_elapsed_time from the first such one; False (paused, long
        back-off) stops that clock, so the records are never made dead for a wait the target asked for."""
        ...

    def dead(self, claim: Claim, owner: str, now_ns: int, reason: str) -> None: ...

    def release(self, exporter: str, owner: str) -> None: ...

    def deliveries(
        self, exporter: str | None, state: str | None, limit: int, filters: Mapping[str, ExportFilter] | None = None
    ) -> list[Delivery]:
        """Dead and pending deliveries (see DELIVERY_STATES); `filters`: each exporter's, to list
        the records of a batch in retry as the retry will send them."""
        ...

    def requeue_dead(self, exporter: str | None, record_ids: list[str] | None) -> Requeued: ...

    def exporter_states(self, filters: Mapping[str, ExportFilter] | None = None) -> list[ExporterState]: ...


@runtime_checkable
class AttentionCounts(Protocol):
    """Counts an operator should look at, kept across restarts (optional: a backend without them
    leaves the dashboard with the process's own Prometheus counters). Names: `unknown_model`
    (records stored without a price for their model), `rejected_spans` (spans and log records
    refused for invalid values)."""

    async def count_rejected(self, workspace: str, spans: int) -> None:
        """Add refused spans to the workspace's stored count (a request without records: those of
        a request with records go with them, `RecordStore.write`)."""
        ...

    def attention_counts(self, workspace: str) -> dict[str, int]:
        """{name: count} of the workspace, since the database was created (0 for none)."""
        ...


class Store(Lifecycle, RecordStore, QueryStore, KeyStore, Outbox, Protocol):
    """A whole backend: what `open_store` returns."""
