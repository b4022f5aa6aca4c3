"""What the query API and API keys need from a backend: plain types and two protocols.

The SQL lives in the backends (`sqlite_queries.py`, `sqlite_keys.py`); everything here is
backend-neutral, so a PostgreSQL store implements the same two protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal, Protocol

from spanmeter.record import UsageRecord

if TYPE_CHECKING:  # aggregate.py builds on RecordQuery, defined here
    from spanmeter.store.aggregate import AggregateQuery, AggregateResult

# Query parameter → records column, for the equality filters of GET /api/v1/usage/records.
EQUALITY_FILTERS: Final = {
    "type": "type",
    "conversationId": "conversation_id",
    "messageId": "message_id",
    "taskId": "task_id",
    "contactId": "contact_id",
    "blueprintId": "blueprint_id",
    "botId": "bot_id",
    "datasetId": "dataset_id",
    "skillsetId": "skillset_id",
    "abilityId": "ability_id",
    "customer": "customer_id",
    "kind": "kind",
    "provider": "provider",
}

SCOPES: Final = ("ingest", "read", "admin")
KEY_STATES: Final = ("active", "inactive", "revoked")
Order = Literal["asc", "desc"]


@dataclass(slots=True, frozen=True)
class RecordQuery:
    workspace: str
    order: Order = "desc"
    limit: int = 50
    after_seq: int | None = None  # the cursor: rows strictly past this seq in `order`
    equals: tuple[tuple[str, str], ...] = ()  # (column, value) pairs; columns from EQUALITY_FILTERS
    model: str | None = None  # response_model or request_model
    from_ns: int | None = None  # occurred_at >= from_ns
    to_ns: int | None = None  # occurred_at < to_ns
    meta: tuple[tuple[str, str], ...] = ()
    tag: str | None = None  # records whose tags include this one


@dataclass(slots=True, frozen=True)
class DailyTotals:
    day: int  # days since the Unix epoch (UTC)
    tokens: int = 0
    messages: int = 0
    cost_nano: int = 0


@dataclass(slots=True, frozen=True)
class PeriodTotals:
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    messages: int = 0
    events: int = 0
    meter_records: int = 0
    conversations: int = 0
    cost_nano: int = 0
    meter_quantities: dict[str, Decimal] = field(default_factory=dict)  # meter → total quantity, exact


@dataclass(slots=True, frozen=True)
class ProductAdoption:
    """One product's aggregate over a period: counts only, never an identity."""

    product_id: str | None
    product_name: str | None
    product_type: str | None
    product_category: str | None
    developers: int
    accounts: int
    events: int
    activated_developers: int  # developers with an activation/retention/expansion/commercial event
    families: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class UnknownModel:
    """A model that genai-prices and the overrides could not price, and its records."""

    provider: str | None
    model: str | None  # the name priced: the response model, else the request model
    records: int
    input_tokens: int
    output_tokens: int
    first_at: int  # ns
    last_at: int  # ns


@dataclass(slots=True, frozen=True)
class ApiKey:
    id: str
    workspace: str
    name: str
    prefix: str  # the first characters of the key, to recognise it in lists; not a secret
    key_hash: str
    scopes: tuple[str, ...]
    state: str
    created_at: int  # ns
    updated_at: int  # ns
    # Monthly quota of the key's workspace (calendar month, UTC), checked by the REST ingest
    # before it stores: records of any kind, and cost in nano-USD. None: no limit of that kind.
    quota_records: int | None = None
    quota_cost_nano: int | None = None


class QueryStore(Protocol):
    def find_record_id(self, workspace: str, idempotency_key: str) -> str | None:
        """The id of the record stored under this idempotency key, if any."""
        ...

    def query_records(self, query: RecordQuery) -> list[tuple[int, UsageRecord]]:
        """Up to `query.limit` (seq, record) pairs in `query.order` of seq."""
        ...

    def query_items(self, query: RecordQuery, item_of: Callable[[UsageRecord], str]) -> list[tuple[int, str]]:
        """The same page as (seq, item JSON text) pairs: built by the database where it can
        (store/item_sql.py), by `item_of` where it cannot."""
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
        """Meter query rows (store/aggregate.py); TooManyRows past query.max_rows."""
        ...

    def cursor_secret(self) -> bytes:
        """A random secret kept in the database, so every instance on it signs cursors alike."""
        ...


class KeyStore(Protocol):
    def create_key(self, key: ApiKey) -> None: ...

    def find_key(self, key_hash: str) -> ApiKey | None: ...

    def list_keys(self, workspace: str | None = None) -> list[ApiKey]: ...

    def set_key_state(self, key_id: str, state: str) -> ApiKey:
        """Raises KeyError for an unknown id, ValueError when a revoked key would change."""
        ...

    def set_key_quota(self, key_id: str, records: int | None, cost_nano: int | None) -> ApiKey:
        """Replace the key's monthly quota (None: no limit of that kind); KeyError for an unknown id."""
        ...


