"""The records filters as one FastAPI dependency, shared by `/usage/records` and `/usage/aggregate`:
the contract's relation ids, customer, kind, provider, model, from/to and meta[key]=value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from fastapi import Query, Request

from spanmeter.api.errors import ApiError
from spanmeter.store.queries import EQUALITY_FILTERS, RecordQuery

MAX_META_FILTERS: Final = 10
FILTER_CHARS: Final = 4096
_META_PARAM: Final = re.compile(r"^meta\[(.+)\]$", re.DOTALL)
_INT64_MAX: Final = 2**63 - 1

Filter = Annotated[str | None, Query(max_length=FILTER_CHARS)]

# OpenAPI text for meta[key]=value, which FastAPI cannot declare as a parameter.
META_DOC: Final = {
    "parameters": [
        {
            "name": "meta",
            "in": "query",
            "required": False,
            "style": "deepObject",
            "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": "metadata filters, deep-object syntax: meta[key]=value (all must match; at most 10)",
        }
    ]
}


@dataclass(slots=True, frozen=True)
class RecordFilters:
    equals: tuple[tuple[str, str], ...]
    model: str | None
    from_ns: int | None
    to_ns: int | None
    meta: tuple[tuple[str, str], ...]
    tag: str | None = None

    def query(self, workspace: str) -> RecordQuery:
        return RecordQuery(
            workspace=workspace,
            equals=self.equals,
            model=self.model,
            from_ns=self.from_ns,
            to_ns=self.to_ns,
            meta=self.meta,
            tag=self.tag,
        )


def record_filters(
    request: Request,
    type: Filter = None,
    conversation_id: Annotated[Filter, Query(alias="conversationId")] = None,
    message_id: Annotated[Filter, Query(alias="messageId")] = None,
    task_id: Annotated[Filter, Query(alias="taskId")] = None,
    contact_id: Annotated[Filter, Query(alias="contactId")] = None,
    blueprint_id: Annotated[Filter, Query(alias="blueprintId")] = None,
    bot_id: Annotated[Filter, Query(alias="botId")] = None,
    dataset_id: Annotated[Filter, Query(alias="datasetId")] = None,
    skillset_id: Annotated[Filter, Query(alias="skillsetId")] = None,
    ability_id: Annotated[Filter, Query(alias="abilityId")] = None,
    customer: Annotated[Filter, Query(description="customer_id")] = None,
    kind: Annotated[Literal["llm", "event", "meter"] | None, Query()] = None,
    provider: Filter = None,
    model: Annotated[Filter, Query(description="response model or request model")] = None,
    tag: Annotated[Filter, Query(description="records whose tags include this one")] = None,
    from_: Annotated[
        datetime | None, Query(alias="from", description="occurredAt >= from (ISO-8601)")
    ] = None,
    to: Annotated[datetime | None, Query(description="occurredAt < to (ISO-8601)")] = None,
) -> RecordFilters:
    given = {
        "type": type, "conversationId": conversation_id, "messageId": message_id, "taskId": task_id,
        "contactId": contact_id, "blueprintId": blueprint_id, "botId": bot_id, "datasetId": dataset_id,
        "skillsetId": skillset_id, "abilityId": ability_id, "customer": customer, "kind": kind,
        "provider": provider,
    }  # fmt: skip
    return RecordFilters(
        equals=tuple((EQUALITY_FILTERS[name], value) for name, value in given.items() if value is not None),
        model=model,
        from_ns=time_ns(from_),
        to_ns=time_ns(to),
        meta=meta_filters(request),
        tag=tag,
    )


def meta_filters(request: Request) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        match = _META_PARAM.match(name)
        if match is None:
            continue
        key = match.group(1)
        if len(key) > FILTER_CHARS or len(value) > FILTER_CHARS:
            raise ApiError(f"meta[{key[:40]}]: longer than {FILTER_CHARS} characters")
        if key in found and found[key] != value:
            raise ApiError(f"meta[{key[:40]}]: given twice with different values")
        found[key] = value
    if len(found) > MAX_META_FILTERS:
        raise ApiError(f"meta: at most {MAX_META_FILTERS} meta[key]=value filters")
    return tuple(sorted(found.items()))


def time_ns(when: datetime | None) -> int | None:
    """Unix ns of an ISO time (naive = UTC), clamped to SQLite's int64."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # naive times are UTC
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return max(-_INT64_MAX, min(ns, _INT64_MAX))  # SQLite integers are int64
