"""Rollups of product events for the public adoption rows, kept in the writer's transaction: a
public endpoint must not read a month of events per call, nor every developer of a workspace.

    adoption_daily       (workspace, product, category, UTC day) -> events, events per family,
                         MAX of the product's id / name / type, and how many developers (accounts,
                         activated developers) have their last event (activation) on that day
    adoption_hourly      the same per UTC hour (hour = occurred_at / HOUR_NS)
    adoption_developers  (workspace, product, category, developer) -> time of the developer's last
                         event, and of their last activation/retention/expansion/commercial event
    adoption_accounts    (workspace, product, category, account domain) -> time of its last event

`product` is the product id, else its name (the rows' grouping); `category` is '' for none and
'=' + the category otherwise, so that an empty category stays apart from none. A period is always
"the last N days up to now", so a developer (or account) is active in it exactly when their last
event is at or after its start. Counts add the period's whole days from adoption_daily, the whole
hours before its first midnight from adoption_hourly, and the records of its partial first hour;
the last-event counts (adoption_last_events.py) are moved by triggers when a last event moves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from spanmeter.record import Product, UsageRecord
from spanmeter.store.constants import DAY_NS, HOUR_NS
from spanmeter.store.sql.connection import Connection
from spanmeter.store.sql.dialect import Dialect
from spanmeter.usage_schema import EVENT_FAMILIES

ACTIVATED_FAMILIES: Final = ("activation", "retention", "expansion", "commercial")
FAMILY_COLUMNS: Final = tuple(f"family_{family}" for family in EVENT_FAMILIES)


def _keys(d: Dialect) -> str:
    return f"workspace {d.text} NOT NULL, product {d.text} NOT NULL, category {d.text} NOT NULL"


def _events_table(d: Dialect, table: str, unit: str) -> str:
    return (
        f"CREATE TABLE {table} ({_keys(d)}, {unit} {d.integer} NOT NULL, product_id {d.text},"
        f" product_name {d.text}, product_type {d.text}, events {d.integer} NOT NULL,"
        f" {', '.join(f'{c} {d.integer} NOT NULL DEFAULT 0' for c in FAMILY_COLUMNS)},"
        f" PRIMARY KEY (workspace, {unit}, product, category)){d.table_options}"
    )


def schema(d: Dialect) -> tuple[str, ...]:
    return (
        _events_table(d, "adoption_daily", "day"),
        (
            f"CREATE TABLE adoption_developers ({_keys(d)}, developer {d.text} NOT NULL,"
            f" last_at {d.integer} NOT NULL, activated_at {d.integer},"
            f" PRIMARY KEY (workspace, product, category, developer)){d.table_options}"
        ),
        (
            f"CREATE TABLE adoption_accounts ({_keys(d)}, account {d.text} NOT NULL, last_at {d.integer} NOT NULL,"
            f" PRIMARY KEY (workspace, product, category, account)){d.table_options}"
        ),
    )


def hourly_schema(d: Dialect) -> str:
    """Added by m016 (adoption_last_events.py adds the last-event columns to both tables)."""
    return _events_table(d, "adoption_hourly", "hour")


# The product events of the records, as the partial index records_product_events selects them.
PRODUCT_EVENTS: Final = "kind = 'event' AND (product_id IS NOT NULL OR product_name IS NOT NULL)"
PRODUCT_KEY: Final = "COALESCE(product_id, product_name)"
CATEGORY_KEY: Final = "COALESCE('=' || product_category, '')"
DEVELOPER: Final = "COALESCE(user_id, email)"
_ACTIVATED: Final = ", ".join(f"'{family}'" for family in ACTIVATED_FAMILIES)
_FAMILY_SUMS: Final = ", ".join(
    f"COUNT(CASE WHEN event_family = '{family}' THEN 1 END)" for family in EVENT_FAMILIES
)


def _backfill_events(table: str, unit: str, unit_ns: int) -> str:
    return (
        f"INSERT INTO {table} (workspace, product, category, {unit}, product_id, product_name,"
        f" product_type, events, {', '.join(FAMILY_COLUMNS)})"
        f" SELECT workspace, {PRODUCT_KEY}, {CATEGORY_KEY}, occurred_at / {unit_ns},"
        f" MAX(product_id), MAX(product_name), MAX(product_type), COUNT(*), {_FAMILY_SUMS}"
        f" FROM records WHERE {PRODUCT_EVENTS} GROUP BY 1, 2, 3, 4"
    )


HOURLY_BACKFILL: Final = _backfill_events("adoption_hourly", "hour", HOUR_NS)
BACKFILL: Final = (
    _backfill_events("adoption_daily", "day", DAY_NS),
    (
        f"INSERT INTO adoption_developers SELECT workspace, {PRODUCT_KEY}, {CATEGORY_KEY}, {DEVELOPER},"
        f" MAX(occurred_at), MAX(CASE WHEN event_family IN ({_ACTIVATED}) THEN occurred_at END)"
        f" FROM records WHERE {PRODUCT_EVENTS} AND {DEVELOPER} IS NOT NULL GROUP BY 1, 2, 3, 4"
    ),
    (
        f"INSERT INTO adoption_accounts SELECT workspace, {PRODUCT_KEY}, {CATEGORY_KEY}, account_domain,"
        f" MAX(occurred_at) FROM records WHERE {PRODUCT_EVENTS} AND account_domain IS NOT NULL GROUP BY 1, 2, 3, 4"
    ),
)


# The upserts are in SQL both backends accept: a conflict target, the stored row's columns
# qualified with the table (PostgreSQL finds a bare one ambiguous beside `excluded`), and the
# larger of two values as a CASE (SQLite's max(a, b) is PostgreSQL's GREATEST).
def _greatest(table: str, column: str) -> str:
    """`column` set to the larger of its stored value and the new one, either of them NULL."""
    stored, new = f"{table}.{column}", f"excluded.{column}"
    return f"{column} = CASE WHEN {new} > {stored} OR {stored} IS NULL THEN {new} ELSE {stored} END"


def _upsert_events(table: str, unit: str) -> str:
    return (
        f"INSERT INTO {table} (workspace, product, category, {unit}, product_id, product_name, product_type,"
        f" events, {', '.join(FAMILY_COLUMNS)}) VALUES ({', '.join('?' * (8 + len(FAMILY_COLUMNS)))})"
        f" ON CONFLICT (workspace, {unit}, product, category) DO UPDATE SET {_greatest(table, 'product_id')},"
        f" {_greatest(table, 'product_name')}, {_greatest(table, 'product_type')},"
        f" events = {table}.events + excluded.events, "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in FAMILY_COLUMNS)
    )


_UPSERT_DAILY: Final = _upsert_events("adoption_daily", "day")
_UPSERT_HOURLY: Final = _upsert_events("adoption_hourly", "hour")
_UPSERT_DEVELOPERS: Final = (
    "INSERT INTO adoption_developers (workspace, product, category, developer, last_at, activated_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, product, category, developer) DO UPDATE SET"
    f" {_greatest('adoption_developers', 'last_at')}, {_greatest('adoption_developers', 'activated_at')}"
)
_UPSERT_ACCOUNTS: Final = (
    "INSERT INTO adoption_accounts (workspace, product, category, account, last_at) VALUES (?, ?, ?, ?, ?)"
    f" ON CONFLICT (workspace, product, category, account) DO UPDATE SET {_greatest('adoption_accounts', 'last_at')}"
)


def _max(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(slots=True)
class _Events:
    """A day's (an hour's) events of one product and category."""

    product_id: str | None = None
    product_name: str | None = None
    product_type: str | None = None
    events: int = 0
    families: list[int] = field(default_factory=lambda: [0] * len(EVENT_FAMILIES))

    def row(self) -> tuple[str | int | None, ...]:
        return (self.product_id, self.product_name, self.product_type, self.events, *self.families)

    def add(self, product: Product, family: str | None) -> None:
        self.product_id = _max(self.product_id, product.id)
        self.product_name = _max(self.product_name, product.name)
        self.product_type = _max(self.product_type, product.type)
        self.events += 1
        if family in EVENT_FAMILIES:
            self.families[EVENT_FAMILIES.index(family)] += 1


def roll_up_adoption(conn: Connection, records: Iterable[UsageRecord]) -> None:
    """Add newly stored product events to the adoption rollups, in the caller's transaction (the
    event rows first: the triggers that move the last-event counts update them)."""
    daily: dict[tuple[str, str, str, int], _Events] = {}
    hourly: dict[tuple[str, str, str, int], _Events] = {}
    developers: dict[tuple[str, str, str, str], list[int | None]] = {}
    accounts: dict[tuple[str, str, str, str], int] = {}
    for record in records:
        product = record.product
        if record.kind != "event" or product is None:
            continue
        key = product.id if product.id is not None else product.name
        if key is None:
            continue
        category = "" if product.category is None else "=" + product.category
        scope = (record.workspace, key, category)
        at = record.occurred_at
        for buckets, bucket in ((daily, at // DAY_NS), (hourly, at // HOUR_NS)):
            counted = buckets.get((*scope, bucket))
            if counted is None:
                counted = buckets[(*scope, bucket)] = _Events()
            counted.add(product, record.event_family)
        developer = record.user_id if record.user_id is not None else record.email
        if developer is not None:
            activated = at if record.event_family in ACTIVATED_FAMILIES else None
            known = developers.get((*scope, developer))
            if known is None:
                developers[(*scope, developer)] = [at, activated]
            else:
                known[0] = max(known[0] or at, at)  # never None: set at creation
                if activated is not None:
                    known[1] = activated if known[1] is None else max(known[1], activated)
        if record.account_domain is not None:
            accounts[(*scope, record.account_domain)] = max(
                accounts.get((*scope, record.account_domain), at), at
            )
    if daily:
        conn.executemany(_UPSERT_DAILY, [(*key, *day.row()) for key, day in daily.items()])
        conn.executemany(_UPSERT_HOURLY, [(*key, *hour.row()) for key, hour in hourly.items()])
    if developers:
        conn.executemany(_UPSERT_DEVELOPERS, [(*key, *values) for key, values in developers.items()])
    if accounts:
        conn.executemany(_UPSERT_ACCOUNTS, [(*key, at) for key, at in accounts.items()])
