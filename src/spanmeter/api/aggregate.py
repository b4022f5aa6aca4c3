"""`GET /api/v1/usage/aggregate`: meter queries over the workspace's usage.

Metrics (cost, tokens, records, quantity, distinct users and conversations) per window (hour, day,
month or none, in a time zone) and group (customer, provider, model, kind, type, meter, meta.KEY),
with the records endpoint's filters. Exact: cost and quantity are decimal strings. The store
answers from the daily rollups when they hold everything asked, from the records otherwise; the
response says which (`source`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from spanmeter.api.errors import ApiError
from spanmeter.api.filters import META_DOC, RecordFilters, record_filters
from spanmeter.api.models import AggregateResponse
from spanmeter.api.usage import CallerDep, keyed_router
from spanmeter.record import decimal_string, format_ns
from spanmeter.store.aggregate import (
    DIMENSIONS,
    METRICS,
    AggregateQuery,
    AggregateResult,
    TooManyRows,
    Window,
    group_by_from,
    metrics_from,
    zone,
)
from spanmeter.store.port import QueryStore

MAX_ROWS: Final = 100_000
MAX_GROUP_BY: Final = 4


def create_router(store: QueryStore) -> APIRouter:
    router = keyed_router("/api/v1/usage", "usage")

    @router.get(
        "/aggregate",
        response_model=AggregateResponse,
        summary="Metrics per time window and group (meter queries)",
        openapi_extra=META_DOC,
    )
    def aggregate(
        caller: CallerDep,
        filters: Annotated[RecordFilters, Depends(record_filters)],
        metric: Annotated[
            str,
            Query(max_length=400, description=f"comma-separated, one or more of: {', '.join(METRICS)}"),
        ] = "cost",
        group_by: Annotated[
            str,
            Query(
                max_length=400,
                description=f"comma-separated, up to {MAX_GROUP_BY} of: {', '.join(DIMENSIONS)}, meta.KEY",
            ),
        ] = "",
        window: Annotated[
            Window, Query(description="hour, day, month, or none (one row per group)")
        ] = "none",
        tz: Annotated[
            str, Query(max_length=64, description="IANA time zone of the windows, e.g. Europe/Paris")
        ] = "UTC",
    ) -> Response:
        try:
            zone(tz)
        except ValueError as error:
            raise ApiError(f"tz: {error}") from None
        if filters.from_ns is not None and filters.to_ns is not None and filters.from_ns >= filters.to_ns:
            raise ApiError("from: must be earlier than to")
        query = AggregateQuery(
            metrics=parse_metrics(metric),
            group_by=parse_group_by(group_by),
            where=filters.query(caller.workspace),
            window=window,
            tz=tz,
            max_rows=MAX_ROWS,
            as_json=True,
        )
        try:
            result = store.aggregate(query)
        except TooManyRows:
            raise ApiError(
                f"window: the answer has more than {MAX_ROWS} rows; narrow from/to,"
                " choose a longer window or fewer group_by dimensions"
            ) from None
        return Response(render_bytes(query, result), media_type="application/json")

    return router


def parse_metrics(text: str) -> tuple[str, ...]:
    try:
        return metrics_from(text)
    except ValueError as error:
        raise ApiError(f"metric: {error}") from None


def parse_group_by(text: str) -> tuple[str, ...]:
    try:
        return group_by_from(text, MAX_GROUP_BY)
    except ValueError as error:
        raise ApiError(f"group_by: {error}") from None


def render_bytes(query: AggregateQuery, result: AggregateResult) -> bytes:
    """The response body: rows the store built as JSON (12 MB for 30 days of 2,000 customers by
    day) go in as they are, not through a str and back."""
    if result.rows_json is None:
        return render(query, result).encode()
    head = render(query, AggregateResult([], result.source)).encode()
    return b"".join((head[:-2], result.rows_json, head[-2:]))


def render(query: AggregateQuery, result: AggregateResult) -> str:
    """The response as JSON text, built directly: a month of 2,000 customers per day is 60,000
    rows, and validating each through pydantic would cost more than the query."""
    dumps = json.dumps
    times: dict[int | None, str] = {None: "null"}
    formats = [
        (dumps(name), _money_json if name == "cost" else _quantity_json if name == "quantity" else str)
        for name in query.metrics
    ]
    group_names = [dumps(name) for name in query.group_by]
    parts = [result.rows_json.decode()] if result.rows_json else []
    for row in result.rows:
        start, end = row.window_start, row.window_end
        for bound in (start, end):
            if bound not in times and bound is not None:
                times[bound] = f'"{format_ns(bound)}"'
        group = ",".join([f"{n}:{dumps(v)}" for n, v in zip(group_names, row.group, strict=True)])
        values = ",".join(
            [f"{n}:{f(row.values[m])}" for (n, f), m in zip(formats, query.metrics, strict=True)]
        )
        parts.append(
            f'{{"windowStart":{times[start]},"windowEnd":{times[end]},"group":{{{group}}},"values":{{{values}}}}}'
        )
    where = query.where
    head = {
        "metrics": list(query.metrics),
        "groupBy": list(query.group_by),
        "window": query.window,
        "tz": query.tz,
        "from": None if where.from_ns is None else format_ns(where.from_ns),
        "to": None if where.to_ns is None else format_ns(where.to_ns),
        "source": result.source,
    }
    return f'{dumps(head)[:-1]},"rows":[{",".join(parts)}]}}'


def money(nano: int | Decimal) -> str:
    """nano-USD as an exact decimal string, without going through Decimal (60,000 rows a call)."""
    if nano < 0:
        return "-" + money(-nano)
    whole, fraction = divmod(int(nano), 1_000_000_000)
    return f"{whole}.{fraction:09d}".rstrip("0") if fraction else str(whole)


def _money_json(nano: int | Decimal) -> str:
    return f'"{money(nano)}"'


def _quantity_json(value: int | Decimal) -> str:
    return f'"{decimal_string(Decimal(value))}"'
