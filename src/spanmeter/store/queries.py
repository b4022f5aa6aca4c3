"""What the query API and API keys ask a backend, and what it answers: plain, backend-neutral types.

The protocols that take and return them are in port.py; the SQL lives in the backends
(`store/sql/queries.py`, `store/sql/api_keys.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

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
    before_seq: int | None = None  # rows strictly below this seq (an export's share of the records)
    equals: tuple[tuple[str, str], ...] = ()  # (column, value) pairs; columns from EQUALITY_FILTERS
    model: str | None = None  # response_model or request_model
    from_ns: int | None = None  # occurred_at >= from_ns
    to_ns: int | None = None  # occurred_at < to_ns
    meta: tuple[tuple[str, str], ...] = ()
    tag: str | None = None  # records whose tags include this one


# How a CsvLine cell is written (store/sqlite/csv_sql.py; crm/rows.py writes the same in Python):
# text: an emitter's text, a leading `'` when it starts like a formula (= + - @ tab CR), NULL -> empty;
# plain: as stored; tokens: an LLM record's total_tokens, else input + output, empty for others;
# quantity, money (nano-USD): exact decimal strings; rfc3339, millis_utc (yyyy-MM-ddTHH:mm:ss.SSSZ),
# unix_millis, date (yyyy-MM-dd): a time in UTC; account: left for the caller to fill in.
CsvFormat = Literal["text", "plain", "tokens", "quantity", "money", "rfc3339", "millis_utc", "unix_millis", "date",
                    "account"]


@dataclass(slots=True, frozen=True)
class CsvLine:
    """A CSV line per record, written by the database (QueryStore.query_csv_lines): cells in
    order, RFC 4180 quoting (a cell holding a comma, double quote, CR or LF in double quotes, its
    quotes doubled), comma-separated. The line comes in parts around the `account` cells."""

    cells: tuple[tuple[str, CsvFormat], ...]  # (stored column, format)
    columns: tuple[str, ...] = ()  # stored columns returned as they are, before the parts
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # only records whose column holds one of the values


@dataclass(slots=True, frozen=True)
class CsvLines:
    """A page of CsvLine lines, column by column (a tuple per row cost more than the lines): the
    rows' seqs, the values of each of `CsvLine.columns`, and each part of the text between the
    `account` cells (one part more than there are such cells). A row whose first part is None is
    one the database cannot write exactly: the caller writes that line."""

    seqs: Sequence[int]
    columns: Sequence[Sequence[Any]]
    parts: Sequence[Sequence[str | None]]


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
