"""Stream records from the store into CSV files in bounded memory: `spanmeter export csv` and the
`csv` exporter's accounts file.

Records are read in pages of PAGE_SIZE in storage order (the store's insertion order, `seq`: the
order of `actions.csv` too) through the query protocol's cursor, so memory holds one page and,
for accounts, the roll-up. Files are written whole to a temporary file and renamed over the
target (crm/files.py), or streamed to a pipe.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final

from spanmeter.crm.cells import BOM
from spanmeter.crm.rows import (
    EXPORT_COLUMNS,
    AccountRollup,
    Stored,
    action_row_builder,
    header,
    kind_of,
    matches,
)
from spanmeter.crm.templates import Kind, Template
from spanmeter.store.outbox import ExportFilter
from spanmeter.store.port import QueryStore
from spanmeter.store.queries import RecordQuery

PAGE_SIZE: Final = 5_000
_FLUSH_ROWS: Final = 2_000


class Cancelled(Exception):
    """The export was asked to stop (the exporter is shutting down)."""


@dataclass(frozen=True)
class Selection:
    """Which records an export reads: workspaces, a time range and filters."""

    workspaces: tuple[str, ...]
    from_ns: int | None = None
    to_ns: int | None = None
    customer: str | None = None
    where: ExportFilter = field(default_factory=ExportFilter)  # kinds, types, customers (an exporter's filter)


def _pages(store: QueryStore, selection: Selection) -> Iterator[list[tuple[Any, ...]]]:
    equals = (("customer_id", selection.customer),) if selection.customer is not None else ()
    for workspace in selection.workspaces:
        query = RecordQuery(
            workspace=workspace, order="asc", limit=PAGE_SIZE, equals=equals,
            from_ns=selection.from_ns, to_ns=selection.to_ns,
        )
        while True:
            page = store.query_columns(query, EXPORT_COLUMNS)
            if page:
                yield page
            if len(page) < PAGE_SIZE:
                break
            query = replace(query, after_seq=page[-1][0])


def stream_records(
    store: QueryStore, selection: Selection, on_page: Callable[[int], None] | None = None
) -> Iterator[Stored]:
    """The selected records' stored values (crm/rows.py EXPORT_COLUMNS) in storage order, a page
    at a time; `on_page(n)` after each page read."""
    where = selection.where
    check = bool(where.kinds or where.types or where.customers)
    for page in _pages(store, selection):
        if on_page is not None:
            on_page(len(page))
        if check:
            yield from (row for row in page if matches(where, row))
        else:
            yield from page


def write_rows(out: BinaryIO, head: Sequence[str], rows: Iterable[Sequence[str]], bom: bool) -> int:
    """Header and rows as UTF-8 CSV on `out` (RFC 4180 quoting, CRLF); the number of rows."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        if bom:
            text.write(BOM)
        writer = csv.writer(text, dialect="excel")
        writer.writerow(head)
        count = 0
        rest = iter(rows)
        while chunk := list(itertools.islice(rest, _FLUSH_ROWS)):
            writer.writerows(chunk)
            count += len(chunk)
        text.flush()
    finally:
        text.detach()  # `out` stays open: the caller fsyncs and renames it
    return count


def action_rows(records: Iterable[Stored], template: Template, kinds: tuple[str, ...]) -> Iterator[Sequence[str]]:
    row = action_row_builder(template)
    return (row(values) for values in records if kind_of(values) in kinds)


def account_rollup(records: Iterable[Stored], cancelled: Callable[[], bool] | None = None) -> AccountRollup:
    rollup = AccountRollup()
    for count, record in enumerate(records):
        if cancelled is not None and count % PAGE_SIZE == 0 and cancelled():
            raise Cancelled
        rollup.add(record)
    return rollup


def write_export(
    out: BinaryIO,
    store: QueryStore,
    kind: Kind,
    template: Template,
    selection: Selection,
    *,
    action_kinds: tuple[str, ...] = ("event",),
    bom: bool = False,
    on_page: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Write one export (`actions` or `accounts`) on `out`; the number of rows written."""
    records = stream_records(store, selection, on_page)
    if kind == "actions":
        return write_rows(out, header(template, kind), action_rows(records, template, action_kinds), bom)
    rollup = account_rollup(records, cancelled)
    return write_rows(out, header(template, kind), rollup.rows(template), bom)
