"""`GET /api/v1/usage/records`, `/usage/series`, `/usage/snapshot`: the workspace reads its usage.

Every query is scoped to the caller's workspace (the API key's; the configured one when auth is
off). Handlers are plain `def`: FastAPI runs them in its thread pool, so SQLite reads never block
the event loop that receives spans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer

from spanmeter.api.cursor import decode_cursor, encode_cursor
from spanmeter.api.errors import ERROR_RESPONSES, ApiError
from spanmeter.api.filters import META_DOC, Filter, RecordFilters, record_filters
from spanmeter.api.models import RecordsPage, Series, Snapshot
from spanmeter.auth import Principal
from spanmeter.encoding import item_text
from spanmeter.money import from_nano
from spanmeter.record import decimal_string, format_ns
from spanmeter.store.constants import DAY_NS
from spanmeter.store.port import QueryStore
from spanmeter.store.queries import RecordQuery

SERIES_DAYS: Final = 90
MAX_TAKE: Final = 500

# Documentation only: the AuthMiddleware enforces keys; these make OpenAPI show both schemes.
bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="the API key")


def principal(request: Request) -> Principal:
    found = getattr(request.state, "principal", None)
    if not isinstance(found, Principal):  # the middleware always sets it; never serve without it
        raise ApiError("unauthenticated request", 401)
    return found


def single_values(request: Request) -> None:
    """A parameter given twice is ambiguous (FastAPI would take the last one): refuse it. So is a
    NUL character, which no filter can match (PostgreSQL refuses it in any text)."""
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    repeated = sorted({name for name in names if names.count(name) > 1 and not name.startswith("meta[")})
    if repeated:
        raise ApiError(f"{repeated[0]}: given more than once; give each parameter once")
    for name, value in items:
        if "\x00" in name or "\x00" in value:
            raise ApiError(f"{name.replace(chr(0), '%00')[:60]}: contains a NUL character (%00); remove it")


CallerDep = Annotated[Principal, Depends(principal)]


def keyed_router(prefix: str, tag: str) -> APIRouter:
    """A router whose every route takes the caller's key (Bearer or x-api-key), refuses repeated
    query parameters and documents the shared error answers."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        dependencies=[Security(bearer), Security(api_key_header), Depends(single_values)],
        responses=ERROR_RESPONSES,
    )


def create_router(store: QueryStore, clock: Callable[[], int] = time.time_ns) -> APIRouter:
    router = keyed_router("/api/v1/usage", "usage")

    @router.get(
        "/records",
        response_model=RecordsPage,
        summary="Usage records, newest first, with cursor pagination",
        openapi_extra=META_DOC,
    )
    def list_records(
        caller: CallerDep,
        filters: Annotated[RecordFilters, Depends(record_filters)],
        cursor: Annotated[str | None, Query(max_length=512, description="from the previous page")] = None,
        order: Annotated[Literal["asc", "desc"], Query(description="by insertion order")] = "desc",
        take: Annotated[int, Query(ge=1, le=MAX_TAKE, description="page size")] = 50,
    ) -> Response:
        query = replace(filters.query(caller.workspace), order=order, limit=take + 1)  # +1: is there a next page?
        secret = store.cursor_secret()
        if cursor is not None:
            query = _with_after(query, decode_cursor(secret, query, cursor))
        rows = store.query_items(query, item_text)
        more = len(rows) > take
        rows = rows[:take]
        next_cursor = encode_cursor(secret, _with_after(query, None), rows[-1][0]) if more else None
        # Items are JSON texts already (built by SQLite): spliced in, not parsed and dumped again.
        body = f'{{"items":[{",".join(item for _, item in rows)}],"cursor":{json.dumps(next_cursor)}}}'
        return Response(body.encode(), media_type="application/json")

    @router.get("/series", response_model=Series, summary="The last 90 days, one point per UTC day")
    def series(
        caller: CallerDep,
        customer: Annotated[Filter, Query(description="only this customer_id")] = None,
    ) -> Series:
        today = clock() // DAY_NS
        first = today - SERIES_DAYS + 1
        start, end = first * DAY_NS, (today + 1) * DAY_NS
        totals = {t.day: t for t in store.daily_totals(caller.workspace, customer, start, end)}
        new = store.new_conversations(caller.workspace, customer, start, end)
        days = range(first, today + 1)
        ms = {day: day * 86_400_000 for day in days}
        empty: dict[str, Any] = {"tokens": 0, "messages": 0, "cost_nano": 0}
        return Series.model_validate(
            {
                "tokens": [{"timestamp": ms[d], "total": _get(totals, d, "tokens", empty)} for d in days],
                "conversations": [{"timestamp": ms[d], "total": new.get(d, 0)} for d in days],
                "messages": [{"timestamp": ms[d], "total": _get(totals, d, "messages", empty)} for d in days],
                "cost": [
                    {"timestamp": ms[d], "total": _money(_get(totals, d, "cost_nano", empty))} for d in days
                ],
            }
        )

    @router.get(
        "/snapshot",
        response_model=Snapshot,
        summary="Totals of the current billing period (calendar month, UTC)",
    )
    def snapshot(
        caller: CallerDep,
        customer: Annotated[Filter, Query(description="only this customer_id")] = None,
    ) -> Snapshot:
        now = datetime.fromtimestamp(clock() / 1e9, UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        start_ns, end_ns = int(start.timestamp()) * 1_000_000_000, int(end.timestamp()) * 1_000_000_000
        totals = store.period_totals(caller.workspace, customer, start_ns, end_ns)
        return Snapshot(
            period_start=format_ns(start_ns),
            period_end=format_ns(end_ns),
            customer=customer,
            tokens=totals.tokens,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            messages=totals.messages,
            conversations=totals.conversations,
            events=totals.events,
            meter_records=totals.meter_records,
            meters={meter: decimal_string(q) for meter, q in sorted(totals.meter_quantities.items())},
            cost=_money(totals.cost_nano),
        )

    return router




def _with_after(query: RecordQuery, seq: int | None) -> RecordQuery:
    return replace(query, after_seq=seq)


def _get(totals: dict[int, Any], day: int, name: str, empty: dict[str, Any]) -> int:
    found = totals.get(day)
    value: int = empty[name] if found is None else getattr(found, name)
    return value


def _money(nano: int) -> str:
    return decimal_string(from_nano(nano))
