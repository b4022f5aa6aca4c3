"""Records to CSV rows: one action row per record, and the accounts roll-up (one row per account).

Both work on a record's stored values (EXPORT_COLUMNS, as `QueryStore.query_columns` reads them:
money in integer nano-USD), so `spanmeter export csv` reads a million records without building a
UsageRecord for each; the exporter's batches, which carry UsageRecords, go through `stored_values`
to the same code, so a file is the same whichever wrote it.

An action row: occurred at, account domain (crm/domains.py), developer (`user_id`), email, kind,
type, event name and family, product id/name/type, source, campaign id, tokens (LLM records: the
total the emitter gave, else input + output), quantity (meter records), cost and idempotency key.

An account row sums every record of the account's domain: first and last seen (occurred_at),
distinct developers, product events per family, LLM calls, their tokens, the cost of all its
records (exact; unpriced records add nothing), the last product event (by occurred_at) and the top
product (the most events; the first name in order on a tie). Memory grows with the accounts,
their developers and products, never with the records.
"""

from __future__ import annotations

import functools
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from spanmeter.crm.cells import FORMULA_STARTS, csv_text
from spanmeter.crm.domains import account_domain
from spanmeter.crm.templates import (
    ACTION_FIELDS,
    TIME_FIELDS,
    Kind,
    Template,
    TimeFormat,
    date_only,
    rfc3339,
    salesforce_datetime,
    unix_millis,
)
from spanmeter.record import UsageRecord, decimal_string
from spanmeter.store.outbox import ExportFilter
from spanmeter.store.queries import CsvFormat, CsvLine
from spanmeter.store.schema import COLUMNS, record_to_row
from spanmeter.usage_schema import EVENT_FAMILIES

EXPORT_COLUMNS: Final = (
    # what the accounts roll-up reads (ACCOUNT_COLUMNS: a prefix, so the indices below hold for both)
    "occurred_at", "account_domain", "email", "user_id", "kind", "event_name", "event_family", "product_id",
    "product_name", "input_tokens", "output_tokens", "total_tokens", "cost_usd_nano",
    "type", "workspace", "customer_id",  # what `matches` reads
    "product_type", "source", "campaign_id", "quantity", "idempotency_key",
)
ACCOUNT_COLUMNS: Final = EXPORT_COLUMNS[:13]
FILTERED_ACCOUNT_COLUMNS: Final = EXPORT_COLUMNS[:16]
(_AT, _DOMAIN, _EMAIL, _USER, _KIND, _EVENT, _FAMILY, _PRODUCT_ID, _PRODUCT_NAME, _INPUT, _OUTPUT, _TOTAL, _COST,
 _TYPE, _WORKSPACE, _CUSTOMER, _PRODUCT_TYPE, _SOURCE, _CAMPAIGN, _QUANTITY, _KEY) = range(1, len(EXPORT_COLUMNS) + 1)
Stored = tuple[Any, ...]  # (seq, *EXPORT_COLUMNS values): the rows of query_columns as they come
_PICK: Final = operator.itemgetter(*(COLUMNS.index(c) for c in EXPORT_COLUMNS))
_NANO: Final = 1_000_000_000


def stored_values(record: UsageRecord) -> Stored:
    """A record's (seq, *EXPORT_COLUMNS) values as the store holds them (seq not needed: 0)."""
    return (0, *_PICK(record_to_row(record)))


def matches(where: ExportFilter, values: Stored) -> bool:
    """ExportFilter.matches on stored values."""
    return (
        (not where.workspaces or values[_WORKSPACE] in where.workspaces)
        and (not where.kinds or values[_KIND] in where.kinds)
        and (not where.types or values[_TYPE] in where.types)
        and (not where.customers or values[_CUSTOMER] in where.customers)
    )


def kind_of(values: Stored) -> str:
    return str(values[_KIND])


def _text(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def usd(nano: int) -> str:
    """Integer nano-USD as an exact decimal string: 1500 -> '0.0000015', 2_000_000_000 -> '2'."""
    sign, nano = ("-", -nano) if nano < 0 else ("", nano)
    whole, part = divmod(nano, _NANO)
    return f"{sign}{whole}.{part:09d}".rstrip("0").rstrip(".") if part else f"{sign}{whole}"


def tokens(values: Stored) -> int | None:
    """An LLM record's tokens: the total the emitter gave, else input + output; None for others."""
    if values[_KIND] != "llm":
        return None
    if values[_TOTAL] is not None:
        return int(values[_TOTAL])
    if values[_INPUT] is None and values[_OUTPUT] is None:
        return None
    return int(values[_INPUT] or 0) + int(values[_OUTPUT] or 0)


def header(template: Template, kind: Kind) -> list[str]:
    return [_text(name) for _, name in template.columns(kind)]


def _action_cells(v: Stored, when: TimeFormat) -> tuple[str, ...]:
    """Every action field's cell, in ACTION_FIELDS order. Written out inline, one call per
    record: a function call per cell (formula check, None to "") cost twice as much at a million
    rows. Each text field supplied by an emitter gets the formula check (`_text` spelled out)."""
    bad = FORMULA_STARTS
    found = tokens(v)
    return (
        when(v[_AT]),
        account_domain(v[_DOMAIN], v[_EMAIL]) or "",
        "" if (user := v[_USER]) is None else "'" + user if user.startswith(bad) else user,
        "" if (email := v[_EMAIL]) is None else "'" + email if email.startswith(bad) else email,
        v[_KIND],
        "'" + v[_TYPE] if v[_TYPE].startswith(bad) else v[_TYPE],
        "" if (event := v[_EVENT]) is None else "'" + event if event.startswith(bad) else event,
        "" if (family := v[_FAMILY]) is None else "'" + family if family.startswith(bad) else family,
        "" if (pid := v[_PRODUCT_ID]) is None else "'" + pid if pid.startswith(bad) else pid,
        "" if (name := v[_PRODUCT_NAME]) is None else "'" + name if name.startswith(bad) else name,
        "" if (ptype := v[_PRODUCT_TYPE]) is None else "'" + ptype if ptype.startswith(bad) else ptype,
        "" if (source := v[_SOURCE]) is None else "'" + source if source.startswith(bad) else source,
        "" if (campaign := v[_CAMPAIGN]) is None else "'" + campaign if campaign.startswith(bad) else campaign,
        "" if found is None else str(found),
        "" if (quantity := v[_QUANTITY]) is None else decimal_string(Decimal(quantity)),
        "" if (cost := v[_COST]) is None else usd(cost),
        "'" + v[_KEY] if v[_KEY].startswith(bad) else v[_KEY],
    )


def action_row_builder(template: Template) -> Callable[[Stored], Sequence[str]]:
    """A function from a record's stored values to its action row in `template`'s columns."""
    when = template.time_format("actions")
    picks = [ACTION_FIELDS.index(name) for name, _ in template.columns("actions")]
    if picks == list(range(len(ACTION_FIELDS))):
        return lambda values: _action_cells(values, when)
    pick = operator.itemgetter(*picks)
    if len(picks) == 1:
        return lambda values: (pick(_action_cells(values, when)),)
    return lambda values: pick(_action_cells(values, when))


# Each action field as the store writes it in a CsvLine (store/queries.py): the same cells as
# _action_cells, to the byte (tests/crm/test_fast_lines.py). Times: the template's format.
_ACTION_CELLS: Final[dict[str, tuple[str, CsvFormat]]] = {
    "account_domain": ("account_domain", "account"),
    "developer_id": ("user_id", "text"),
    "email": ("email", "text"),
    "kind": ("kind", "plain"),
    **{name: (name, "text") for name in (
        "type", "event_name", "event_family", "product_id", "product_name", "product_type", "source", "campaign_id",
        "idempotency_key",
    )},
    "tokens": ("total_tokens", "tokens"),
    "quantity": ("quantity", "quantity"),
    "cost_usd": ("cost_usd_nano", "money"),
}
_SQL_TIMES: Final[dict[TimeFormat, CsvFormat]] = {
    rfc3339: "rfc3339", salesforce_datetime: "millis_utc", unix_millis: "unix_millis", date_only: "date",
}
# The stored columns a CsvLine row starts with: the account's inputs.
LINE_COLUMNS: Final = ("account_domain", "email")


def action_line(template: Template, kinds: tuple[str, ...], where: ExportFilter) -> CsvLine | None:
    """The action rows of `template` (records of `kinds` that `where` matches) as a CsvLine the
    store can write; None when it cannot (a time format it does not know, or a single column:
    csv writes an empty one-cell row as `""`)."""
    when = _SQL_TIMES.get(template.time_format("actions"))
    columns = template.columns("actions")
    if when is None or len(columns) < 2:
        return None
    cells = tuple(("occurred_at", when) if name == "occurred_at" else _ACTION_CELLS[name] for name, _ in columns)
    filters = [("kind", kinds)]
    filters += [(column, values) for column, values in (
        ("kind", where.kinds), ("type", where.types), ("customer_id", where.customers),
    ) if values]
    return CsvLine(cells, LINE_COLUMNS, tuple((column, tuple(values)) for column, values in filters))


@functools.lru_cache(maxsize=65_536)
def account_cell(record_domain: str | None, email: str | None) -> str:
    """The account domain's CSV cell (quoted if it needed to be, which a domain never does)."""
    found = account_domain(record_domain, email) or ""
    return csv_text([[found]])[:-2] if any(c in found for c in ',"\r\n') else found


@dataclass(slots=True)
class Account:
    first_seen: int
    last_seen: int
    developers: set[str] = field(default_factory=set)
    families: Counter[str] = field(default_factory=Counter)
    llm_calls: int = 0
    tokens: int = 0
    cost_nano: int = 0
    last_event: str | None = None
    last_event_at: int | None = None
    products: Counter[str] = field(default_factory=Counter)

    def values(self, domain: str) -> dict[str, object]:
        top = min(self.products.items(), key=lambda item: (-item[1], item[0]))[0] if self.products else None
        return {
            "account_domain": domain,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "developers": len(self.developers),
            **{f"events_{family}": self.families[family] for family in EVENT_FAMILIES},
            "llm_calls": self.llm_calls,
            "tokens": self.tokens,
            "cost_usd": usd(self.cost_nano),
            "last_event": self.last_event,
            "last_event_at": self.last_event_at,
            "top_product": top,
        }


_UNSEEN: Final = Account(0, 0)  # of_source's marker: this (domain, email) pair is new


class AccountRollup:
    """The accounts of the records added, one row each (records without an account are counted
    in `without_account`, not rolled up)."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.without_account = 0

    def add(self, v: Stored) -> None:
        self.add_all((v,))

    def add_all(self, records: Iterable[Stored]) -> None:
        """Add each record: one loop with its lookups bound once (it runs per record, a million
        times for a big export); the account of each (domain, email) pair is remembered."""
        accounts = self.accounts
        of_source: dict[tuple[str | None, str | None], Account | None] = {}
        without = 0
        for v in records:
            source = (v[_DOMAIN], v[_EMAIL])
            account = of_source.get(source, _UNSEEN)
            if account is _UNSEEN:
                domain = account_domain(*source)
                account = None if domain is None else accounts.get(domain)
                if domain is not None and account is None:
                    account = accounts[domain] = Account(v[_AT], v[_AT])
                of_source[source] = account
            if account is None:
                without += 1
                continue
            at = v[_AT]
            if at < account.first_seen:
                account.first_seen = at
            elif at > account.last_seen:
                account.last_seen = at
            if v[_USER]:
                account.developers.add(v[_USER])
            if v[_COST] is not None:
                account.cost_nano += v[_COST]
            kind = v[_KIND]
            if kind == "llm":
                account.llm_calls += 1
                if v[_TOTAL] is not None:
                    account.tokens += v[_TOTAL]
                else:
                    account.tokens += (v[_INPUT] or 0) + (v[_OUTPUT] or 0)
            elif kind == "event":
                if v[_FAMILY]:
                    account.families[v[_FAMILY]] += 1
                if account.last_event_at is None or at >= account.last_event_at:
                    account.last_event, account.last_event_at = v[_EVENT], at
                product = v[_PRODUCT_NAME] or v[_PRODUCT_ID]
                if product:
                    account.products[product] += 1
        self.without_account += without

    def rows(self, template: Template) -> Iterator[list[str]]:
        """One row per account, by domain."""
        when = template.time_format("accounts")
        columns = template.columns("accounts")
        for domain in sorted(self.accounts):
            values = self.accounts[domain].values(domain)
            row = []
            for name, _ in columns:
                value = values[name]
                if value is None:
                    row.append("")
                elif name in TIME_FIELDS:
                    row.append(when(int(value)))  # type: ignore[call-overload]
                elif isinstance(value, int):
                    row.append(str(value))
                else:
                    row.append(_text(str(value)))
            yield row
