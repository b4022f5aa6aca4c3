"""What a write returns, and how the CLI picks recent records: backend-neutral (port.py has the protocols)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spanmeter.record import UsageRecord


@dataclass(slots=True)
class WriteResult:
    inserted: list[UsageRecord] = field(default_factory=list)  # the records newly stored
    duplicates: int = 0  # same (workspace, idempotency_key) already stored or earlier in the batch
    conflicts: int = 0  # duplicates whose content differs from the stored record (the first wins)
    # Records the store cannot hold (a value past a column's range that conversion let through),
    # with why: refused alone, so the rest of the request and other requests are stored.
    refused: list[tuple[UsageRecord, str]] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Rejected:
    """Spans (or log records) of a request refused for invalid values: added to the workspace's
    stored count (the dashboard's `rejected_spans`) in the transaction that stores the request's records."""

    workspace: str
    count: int


@dataclass(slots=True, frozen=True)
class RecordFilter:
    workspace: str | None = None
    customer_id: str | None = None
    kind: str | None = None
    since_ns: int | None = None

