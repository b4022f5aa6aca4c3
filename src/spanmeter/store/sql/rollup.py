"""Daily rollups, kept in the writer's transaction, so the 90-day series and the month's snapshot
read a few rows, not every record of the period (at 10M records: ~2 ms instead of ~20 s,
bench/README.md "Query benchmark").

    usage_daily          (workspace, customer_id, day) → tokens, input/output tokens, messages,
                         events, meter records, cost_nano, new_conversations;
                         customer_id '' is the whole workspace (records never have an empty customer)
    conversation_starts  (workspace, conversation_id) → the customer and time of its first record,
                         and the time of its last (conversations active in a period)
    meter_daily          (workspace, customer_id, day, meter) → the meter's total quantity, an exact
                         decimal string (summed in Python: SQLite's SUM would round through floats)

A conversation is new on the UTC day of its earliest record; one whose earlier record arrives
later moves to that day. It belongs to the customer of its earliest record. Counts are per record
kind as in the query API: tokens and messages of `llm` records, cost of all records.
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

from spanmeter.record import UsageRecord, decimal_string
from spanmeter.store.constants import ALL_CUSTOMERS, DAY_NS
from spanmeter.store.sql.connection import Connection
from spanmeter.store.sql.dialect import Dialect

_CHUNK: Final = 400


def schema(d: Dialect) -> tuple[str, ...]:
    counts = ", ".join(f"{c} {d.integer} NOT NULL DEFAULT 0" for c in _SUMMED)
    return (
        (
            f"CREATE TABLE usage_daily (workspace {d.text} NOT NULL, customer_id {d.text} NOT NULL,"
            f" day {d.integer} NOT NULL, {counts},"
            f" PRIMARY KEY (workspace, customer_id, day)){d.table_options}"
        ),
        (
            f"CREATE TABLE conversation_starts (workspace {d.text} NOT NULL, conversation_id {d.text} NOT NULL,"
            f" customer_id {d.text}, first_at {d.integer} NOT NULL, last_at {d.integer} NOT NULL,"
            f" PRIMARY KEY (workspace, conversation_id)){d.table_options}"
        ),
        "CREATE INDEX conversation_activity ON conversation_starts (workspace, last_at, first_at)",
        "CREATE INDEX conversation_customer_activity ON conversation_starts (workspace, customer_id, last_at, first_at)",
    )


def meter_schema(d: Dialect) -> str:
    return (
        f"CREATE TABLE meter_daily (workspace {d.text} NOT NULL, customer_id {d.text} NOT NULL,"
        f" day {d.integer} NOT NULL, meter {d.text} NOT NULL, quantity {d.text} NOT NULL,"
        f" PRIMARY KEY (workspace, customer_id, day, meter)){d.table_options}"
    )

_METER_QUANTITY: Final = "SELECT quantity FROM meter_daily WHERE workspace = ? AND customer_id = ? AND day = ? AND meter = ?"
_SET_METER_QUANTITY: Final = (
    "INSERT INTO meter_daily (workspace, customer_id, day, meter, quantity) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (workspace, customer_id, day, meter) DO UPDATE SET quantity = excluded.quantity"
)
_EXACT: Final = decimal.Context(prec=decimal.MAX_PREC)  # additions never round
_TOKENS: Final = "COALESCE(total_tokens, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))"
# Fill both from records already stored (databases older than the rollups): two passes over the
# records for usage_daily, one for conversation_starts.
BACKFILL: Final = (
    (
        "INSERT INTO conversation_starts SELECT workspace, conversation_id, customer_id, occurred_at, last_at FROM ("
        " SELECT workspace, conversation_id, customer_id, occurred_at,"
        "  MAX(occurred_at) OVER (PARTITION BY workspace, conversation_id) AS last_at,"
        "  ROW_NUMBER() OVER (PARTITION BY workspace, conversation_id ORDER BY occurred_at, seq) AS n"
        " FROM records WHERE conversation_id IS NOT NULL) WHERE n = 1"
    ),
    *(
        f"INSERT INTO usage_daily (workspace, customer_id, day, tokens, messages, cost_nano,"
        f" input_tokens, output_tokens, events, meters)"
        f" SELECT workspace, {customer}, occurred_at / {DAY_NS},"
        f" SUM(CASE WHEN kind = 'llm' THEN {_TOKENS} ELSE 0 END), SUM(kind = 'llm'), SUM(COALESCE(cost_usd_nano, 0)),"
        f" SUM(CASE WHEN kind = 'llm' THEN COALESCE(input_tokens, 0) ELSE 0 END),"
        f" SUM(CASE WHEN kind = 'llm' THEN COALESCE(output_tokens, 0) ELSE 0 END),"
        f" SUM(kind = 'event'), SUM(kind = 'meter')"
        f" FROM records {where} GROUP BY 1, 2, 3"
        for customer, where in (("''", ""), ("customer_id", "WHERE customer_id IS NOT NULL"))
    ),
    *(
        f"INSERT INTO usage_daily (workspace, customer_id, day, new_conversations)"
        f" SELECT workspace, {customer}, first_at / {DAY_NS}, COUNT(*) FROM conversation_starts {where}"
        f" GROUP BY 1, 2, 3 ON CONFLICT DO UPDATE SET new_conversations = excluded.new_conversations"
        for customer, where in (("''", ""), ("customer_id", "WHERE customer_id IS NOT NULL"))
    ),
)
_SUMMED: Final = (
    "tokens", "messages", "cost_nano", "new_conversations", "input_tokens", "output_tokens", "events", "meters"
)
_UPSERT_DAILY: Final = (
    f"INSERT INTO usage_daily (workspace, customer_id, day, {', '.join(_SUMMED)})"
    f" VALUES (?, ?, ?, {', '.join('?' * len(_SUMMED))}) ON CONFLICT (workspace, customer_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in _SUMMED)
)


def roll_up(conn: Connection, stored: Iterable[tuple[UsageRecord, int | None]]) -> None:
    """Add newly stored records, with their stored cost in nano-USD, to the rollups, in the
    caller's transaction."""
    daily: defaultdict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * len(_SUMMED))
    starts: dict[tuple[str, str], tuple[int, str | None]] = {}
    ends: dict[tuple[str, str], int] = {}
    for record, cost_nano in stored:
        day = record.occurred_at // DAY_NS
        llm = record.kind == "llm"
        tokens = (
            record.total_tokens
            if record.total_tokens is not None
            else (record.input_tokens or 0) + (record.output_tokens or 0)
        ) if llm else 0
        cost = cost_nano or 0
        for customer in _scopes(record.customer_id):
            totals = daily[(record.workspace, customer, day)]
            totals[0] += tokens
            totals[1] += llm
            totals[2] += cost
            if llm:
                totals[4] += record.input_tokens or 0
                totals[5] += record.output_tokens or 0
            totals[6] += record.kind == "event"
            totals[7] += record.kind == "meter"
        if record.conversation_id is not None:
            key = (record.workspace, record.conversation_id)
            known = starts.get(key)
            if known is None or record.occurred_at < known[0]:
                starts[key] = (record.occurred_at, record.customer_id)
            ends[key] = max(ends.get(key, 0), record.occurred_at)
    if starts:
        _count_conversations(conn, starts, ends, daily)
    if daily:
        conn.executemany(_UPSERT_DAILY, [(*key, *totals) for key, totals in daily.items()])
    add_meters(conn, ((r.workspace, r.customer_id, r.occurred_at, r.meter, r.quantity) for r, _ in stored
                      if r.kind == "meter"))


def add_meters(
    conn: Connection, meters: Iterable[tuple[str, str | None, int, str | None, Decimal | None]]
) -> None:
    """Add meter records' quantities — (workspace, customer, occurred_at ns, meter, quantity) — to
    meter_daily, exactly, in the caller's transaction."""
    added: defaultdict[tuple[str, str, int, str], Decimal] = defaultdict(Decimal)
    for workspace, customer, occurred_at, meter, quantity in meters:
        if meter is None or quantity is None:
            continue
        for scope in _scopes(customer):
            key = (workspace, scope, occurred_at // DAY_NS, meter)
            added[key] = _EXACT.add(added[key], quantity)
    rows = []
    for key, quantity in added.items():  # a few keys per batch: (meter, customer, day)
        found = conn.execute(_METER_QUANTITY, key).fetchone()
        total = quantity if found is None else _EXACT.add(Decimal(found[0]), quantity)
        rows.append((*key, decimal_string(total)))
    conn.executemany(_SET_METER_QUANTITY, rows)


def sum_quantities(rows: Iterable[tuple[str, str]]) -> dict[str, Decimal]:
    """(meter, quantity text) rows → each meter's exact total."""
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    for meter, quantity in rows:
        totals[meter] = _EXACT.add(totals[meter], Decimal(quantity))
    return dict(totals)


def _count_conversations(
    conn: Connection,
    starts: dict[tuple[str, str], tuple[int, str | None]],
    ends: dict[tuple[str, str], int],
    daily: defaultdict[tuple[str, str, int], list[int]],
) -> None:
    stored = _stored_starts(conn, list(starts))
    inserts, updates = [], []
    for key, (first_at, customer) in starts.items():
        workspace, conversation = key
        last_at = ends[key]
        known = stored.get(key)
        if known is None:
            inserts.append((workspace, conversation, customer, first_at, last_at))
            for scope in _scopes(customer):
                daily[(workspace, scope, first_at // DAY_NS)][3] += 1
            continue
        known_first, known_customer, known_last = known
        if first_at < known_first:
            # an earlier record of a known conversation: it moves to its true first day
            for scope in _scopes(known_customer):
                daily[(workspace, scope, known_first // DAY_NS)][3] -= 1
            for scope in _scopes(customer):
                daily[(workspace, scope, first_at // DAY_NS)][3] += 1
        else:
            first_at, customer = known_first, known_customer
        if (first_at, customer) != (known_first, known_customer) or last_at > (known_last or 0):
            updates.append((first_at, customer, max(last_at, known_last or 0), workspace, conversation))
    if inserts:
        conn.executemany(
            "INSERT INTO conversation_starts (workspace, conversation_id, customer_id, first_at, last_at)"
            " VALUES (?, ?, ?, ?, ?)",
            inserts,
        )
    if updates:
        conn.executemany(
            "UPDATE conversation_starts SET first_at = ?, customer_id = ?, last_at = ?"
            " WHERE workspace = ? AND conversation_id = ?",
            updates,
        )


_STORED_STARTS: Final = (
    "SELECT conversation_id, first_at, customer_id, last_at FROM conversation_starts"
    " WHERE workspace = ? AND conversation_id IN ({})"
)


def _stored_starts(
    conn: Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str | None, int | None]]:
    found: dict[tuple[str, str], tuple[int, str | None, int | None]] = {}
    by_workspace: defaultdict[str, list[str]] = defaultdict(list)
    for workspace, conversation in keys:
        by_workspace[workspace].append(conversation)
    for workspace, conversations in by_workspace.items():
        for start in range(0, len(conversations), _CHUNK):
            chunk = conversations[start : start + _CHUNK]
            # `workspace = ? AND conversation_id IN (...)` searches the primary key; a row-value
            # `(workspace, conversation_id) IN (VALUES ...)` scanned the whole table per chunk, so
            # every batch cost more as conversations accumulated (a 50k batch: 2.7 s at 250k
            # records, 13.7 s at 2.5M).
            for conversation, first_at, customer, last_at in conn.execute(
                _STORED_STARTS.format(", ".join("?" * len(chunk))), [workspace, *chunk]
            ):
                found[(workspace, conversation)] = (first_at, customer, last_at)
    return found


def _scopes(customer: str | None) -> tuple[str, ...]:
    return (ALL_CUSTOMERS,) if customer is None else (ALL_CUSTOMERS, customer)
