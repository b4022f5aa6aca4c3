"""What every REST ingest route shares: reading the body, the caller's quota, building the common
fields of a record, storing through the one ingest path, and turning every failure into the
family's own JSON error with the right status.

Statuses: 400 invalid body or field (the message names it), or a record the store refused (a
value it cannot hold, e.g. a NUL character in text on PostgreSQL: never answered as accepted),
401/403 from the auth middleware, 402 a key's quota used up, 413 body over `max_request_bytes`,
415 not JSON, 503 with `Retry-After` when the store cannot take more (retry later), 500 only for
a bug (logged).
Nothing is stored unless the whole request (or, in a batch, the event) is valid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from spanmeter.auth import Principal
from spanmeter.convert.values import InvalidSpan
from spanmeter.receivers.ingest import HTTP_STATUS, Ingest, Refusal, refused_where
from spanmeter.receivers.rest.body import RestError, read_json
from spanmeter.receivers.rest.quota import QuotaGuard
from spanmeter.record import UsageRecord
from spanmeter.store.base import WriteResult
from spanmeter.store.port import QueryStore

log = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]
# (status, message) → the family's error body
ErrorShape = Callable[[int, str], dict[str, Any]]


def plain_error(status: int, message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


@dataclass(slots=True)
class RestIngest:
    ingest: Ingest
    store: QueryStore
    max_request_bytes: int
    clock: Callable[[], int] = time.time_ns
    quota: QuotaGuard = field(init=False)

    def __post_init__(self) -> None:
        self.quota = QuotaGuard(self.store, self.clock)

    @property
    def limit(self) -> int:
        """The longest string a record field takes (processors::usage::max_field_chars)."""
        return self.ingest.options.max_field_chars

    @property
    def max_meta_keys(self) -> int:
        """The most metadata entries a record takes (processors::usage::max_meta_keys), as on OTLP."""
        return self.ingest.options.max_meta_keys

    async def body(self, request: Request) -> Any:
        headers = {name.encode("latin-1"): value for name, value in request.headers.items()}
        return await read_json(request.headers.get("content-type", ""), headers, request.stream(), self.max_request_bytes)

    async def check_quota(self, request: Request) -> None:
        found = getattr(request.state, "principal", None)
        await self.quota.check(found if isinstance(found, Principal) else None)

    def common(self, **fields: str | None) -> dict[str, Any]:
        """The record's workspace (the API key's) and the given who/relation fields that have a value."""
        common: dict[str, Any] = {"workspace": self.ingest.workspace()}
        common.update((name, value) for name, value in fields.items() if value is not None)
        return common

    async def write(self, records: list[UsageRecord]) -> WriteResult:
        now = self.clock()
        for record in records:
            record.received_at = now
        try:
            return await self.ingest.write_records(records)
        except Refusal as refusal:
            if not refusal.retryable:  # a value the store cannot hold (400), more than it can ever queue (413)
                raise RestError(HTTP_STATUS[refusal.kind], refusal.message) from None
            raise RestError(503, refusal.message, refusal.retry_after or 1.0) from None

    async def write_one(self, record: UsageRecord) -> WriteResult:
        """Store one record; one the store refuses (a value it cannot hold) is a 400, as an invalid
        field is: it was not stored, so it is never answered as accepted."""
        result = await self.write([record])
        if result.refused:
            raise RestError(400, refused_message(*result.refused[0]))
        return result

    async def stored_id(self, record: UsageRecord, result: WriteResult) -> tuple[str | None, bool]:
        """(id of the stored record of `record`'s key, whether `record` was a duplicate)."""
        if any(inserted is record for inserted in result.inserted):
            return record.id, False
        found = await asyncio.to_thread(self.store.find_record_id, record.workspace, record.idempotency_key)
        return found, True


def refused_message(record: UsageRecord, why: str) -> str:
    """The error of a record the store refused, worded as OTLP's partial success words it."""
    return f"{refused_where(record)}: {why}"


def json_route(
    handler: Callable[[Request], Awaitable[Answer]], error_shape: ErrorShape = plain_error
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A FastAPI endpoint running `handler`, every refusal answered in `error_shape`."""

    async def endpoint(request: Request) -> JSONResponse:
        headers: dict[str, str] = {}
        try:
            status, body = await handler(request)
        except RestError as error:
            status, body = error.status, error_shape(error.status, error.message)
            if error.retry_after is not None:
                headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        except InvalidSpan as error:
            status, body = 400, error_shape(400, str(error))
        except Exception:
            log.exception("REST ingest %s failed", request.url.path)
            status, body = 500, error_shape(500, "Internal server error")
        return JSONResponse(body, status_code=status, headers=headers)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
