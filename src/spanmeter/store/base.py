"""The Store protocol: what receivers, the API and the CLI need from a backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from spanmeter.errors import Overloaded
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
class RecordFilter:
    workspace: str | None = None
    customer_id: str | None = None
    kind: str | None = None
    since_ns: int | None = None


class Store(Protocol):
    async def start(self) -> None: ...

    def overloaded(self) -> Overloaded | None:
        """The error to refuse a request with while the write queue is full, else None (cheap)."""
        ...

    async def write(self, records: list[UsageRecord]) -> WriteResult:
        """Commit the records (idempotently) before returning; raises StorageError / Overloaded."""
        ...

    def recent(self, where: RecordFilter, limit: int) -> list[UsageRecord]:
        """The records that occurred last, newest first by `occurred_at` (synchronous: for the CLI and tests)."""
        ...

    async def close(self) -> None:
        """Finish queued writes, then release the database. Safe without start."""
        ...
