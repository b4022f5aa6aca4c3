"""The records table: its columns and the record ⇄ row mapping shared by every backend.

Columns follow `UsageRecord` (and so the proto) one to one, except where SQL needs another shape:
`product` is flattened to `product_<field>`, money is integer nano-USD (`cost_usd_nano`,
`reported_cost_usd_nano`), `quantity` is the exact decimal string, `tags` and `meta` are JSON text.
`seq` is the store's insertion order (the query API's cursor).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from spanmeter.money import from_nano, to_nano
from spanmeter.record import RECORD_FIELDS, Product, UsageRecord

PRODUCT_COLUMNS: Final = ("product_id", "product_name", "product_type", "product_version", "product_category")
INTEGER_COLUMNS: Final = frozenset(
    {
        "occurred_at",
        "received_at",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_usd_nano",
        "reported_cost_usd_nano",
    }
)
NOT_NULL_COLUMNS: Final = frozenset(
    {"id", "idempotency_key", "workspace", "kind", "type", "occurred_at", "received_at", "cost_source", "status"}
)
_RENAMED: Final = {"cost_usd": ("cost_usd_nano",), "reported_cost_usd": ("reported_cost_usd_nano",), "product": PRODUCT_COLUMNS}

# Every column but `seq`, in record field order: the order of INSERT values.
COLUMNS: Final = tuple(col for name in RECORD_FIELDS for col in _RENAMED.get(name, (name,)))
# Columns that say what is billed; equal idempotency keys with different content are a conflict.
# Links and timing are left out: two tracers' spans of one provider call (one key) differ in them.
CONTENT_COLUMNS: Final = tuple(
    c
    for c in COLUMNS
    if c not in ("id", "received_at", "trace_id", "span_id", "occurred_at", "latency_ms", "service_name")
)


def column_type(column: str) -> str:
    return "INTEGER" if column in INTEGER_COLUMNS else "TEXT"


def record_to_row(r: UsageRecord) -> tuple[Any, ...]:
    p = r.product
    return (
        r.idempotency_key,
        r.kind,
        r.type,
        r.occurred_at,
        r.workspace,
        r.id,
        r.received_at,
        r.latency_ms,
        r.customer_id,
        r.user_id,
        r.email,
        r.account_domain,
        r.provider,
        r.request_model,
        r.response_model,
        r.operation,
        r.input_tokens,
        r.output_tokens,
        r.total_tokens,
        r.cache_read_tokens,
        r.cache_write_tokens,
        r.reasoning_tokens,
        None if r.cost_usd is None else to_nano(r.cost_usd),
        r.cost_source,
        r.price_ref,
        None if r.reported_cost_usd is None else to_nano(r.reported_cost_usd),
        r.status,
        r.error_type,
        r.event_name,
        r.event_family,
        p.id if p else None,
        p.name if p else None,
        p.type if p else None,
        p.version if p else None,
        p.category if p else None,
        r.source,
        r.campaign_id,
        r.meter,
        None if r.quantity is None else str(r.quantity),
        r.conversation_id,
        r.message_id,
        r.task_id,
        r.contact_id,
        r.blueprint_id,
        r.bot_id,
        r.dataset_id,
        r.skillset_id,
        r.ability_id,
        r.feature,
        json.dumps(r.tags) if r.tags else None,
        r.trace_id,
        r.span_id,
        r.service_name,
        # UTF-8 as is: SQLite's JSON paths match keys by their stored text, not by escapes.
        json.dumps(r.meta, sort_keys=True, ensure_ascii=False) if r.meta else None,
        r.query,
    )


_COST_AT: Final = COLUMNS.index("cost_usd_nano")
_REPORTED_AT: Final = COLUMNS.index("reported_cost_usd_nano")
_QUANTITY_AT: Final = COLUMNS.index("quantity")
_TAGS_AT: Final = COLUMNS.index("tags")
_META_AT: Final = COLUMNS.index("meta")
_PRODUCT_AT: Final = COLUMNS.index(PRODUCT_COLUMNS[0])
assert COLUMNS[_PRODUCT_AT : _PRODUCT_AT + len(PRODUCT_COLUMNS)] == PRODUCT_COLUMNS
assert _PRODUCT_AT < _QUANTITY_AT and _PRODUCT_AT < _TAGS_AT and _PRODUCT_AT < _META_AT


def row_to_record(row: Sequence[Any]) -> UsageRecord:
    """A record from a row of COLUMNS (in that order). COLUMNS follow the record's fields, so the
    row converts in place and builds the record positionally: 3x faster than by name, which
    counts when an export reads a million records."""
    values = list(row)
    if (cost := values[_COST_AT]) is not None:
        values[_COST_AT] = from_nano(cost)
    if (reported := values[_REPORTED_AT]) is not None:
        values[_REPORTED_AT] = from_nano(reported)
    if (quantity := values[_QUANTITY_AT]) is not None:
        values[_QUANTITY_AT] = Decimal(quantity)
    tags, meta = values[_TAGS_AT], values[_META_AT]
    values[_TAGS_AT] = json.loads(tags) if tags else []
    values[_META_AT] = json.loads(meta) if meta else {}
    product = values[_PRODUCT_AT : _PRODUCT_AT + len(PRODUCT_COLUMNS)]  # last: it shifts what follows
    values[_PRODUCT_AT : _PRODUCT_AT + len(PRODUCT_COLUMNS)] = [Product(*product) if any(product) else None]
    return UsageRecord(*values)
