"""Stream records from the store into CSV files in bounded memory: `spanmeter export csv` and the
`csv` exporter's accounts file.

Records are read in pages of PAGE_SIZE in storage order (the store's insertion order, `seq`: the
order of `actions.csv` too) through the query protocol's cursor, so memory holds one page and,
for accounts, the roll-up. Files are written whole to a temporary file and renamed over the
target (crm/files.py), or streamed to a pipe.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, cast

from spanmeter.crm.cells import BOM
from spanmeter.crm.rows import (
    ACCOUNT_COLUMNS,
    EXPORT_COLUMNS,
    FILTERED_ACCOUNT_COLUMNS,
    AccountRollup,
    Stored,
    account_cell,
    action_line,
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


Page = list[tuple[Any, ...]]


def _pages(selection: Selection, read: Callable[[RecordQuery], Page]) -> Iterator[tuple[RecordQuery, Page]]:
    """(query, page) of every page of the selection, `read` reading each."""
    equals = (("customer_id", selection.customer),) if selection.customer is not None else ()
    for workspace in selection.workspaces:
        query = RecordQuery(
            workspace=workspace, order="asc", limit=PAGE_SIZE, equals=equals,
            from_ns=selection.from_ns, to_ns=selection.to_ns,
        )
        while True:
            page = read(query)
            if page:
                yield query, page
            if len(page) < PAGE_SIZE:
                break
            query = replace(query, after_seq=page[-1][0])


def stream_records(
    store: QueryStore, selection: Selection, on_page: Callable[[int], None] | None = None,
    columns: tuple[str, ...] = EXPORT_COLUMNS,
) -> Iterator[Stored]:
    """The selected records' stored values (`columns`, a prefix of crm/rows.py EXPORT_COLUMNS
    that holds what `matches` reads if the selection filters) in storage order, a page at a time;
    `on_page(n)` after each page read."""
    where = selection.where
    check = bool(where.kinds or where.types or where.customers)
    if check and len(columns) < len(FILTERED_ACCOUNT_COLUMNS):
        columns = FILTERED_ACCOUNT_COLUMNS
    for _query, page in _pages(selection, lambda query: store.query_columns(query, columns)):
        if on_page is not None:
            on_page(len(page))
        if check:
            yield from (row for row in page if matches(where, row))
        else:
            yield from page


@contextlib.contextmanager
def _csv_text(out: BinaryIO, head: Sequence[str], bom: bool) -> Iterator[io.TextIOWrapper]:
    """`out` as UTF-8 text with the optional BOM and the header row written (RFC 4180 quoting,
    CRLF); flushed at the end, and `out` left open: the caller fsyncs and renames it."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        if bom:
            text.write(BOM)
        csv.writer(text, dialect="excel").writerow(head)
        yield text
        text.flush()
    finally:
        text.detach()


def write_rows(out: BinaryIO, head: Sequence[str], rows: Iterable[Sequence[str]], bom: bool) -> int:
    """Header and rows as UTF-8 CSV on `out`; the number of rows."""
    count = 0
    with _csv_text(out, head, bom) as text:
        writer = csv.writer(text, dialect="excel")
        rest = iter(rows)
        while chunk := list(itertools.islice(rest, _FLUSH_ROWS)):
            writer.writerows(chunk)
            count += len(chunk)
    return count


def write_text(out: BinaryIO, head: Sequence[str], chunks: Iterable[tuple[str, int]], bom: bool) -> int:
    """Header and (CSV text of whole CRLF-ended rows, their number) chunks as UTF-8 on `out`;
    the number of rows."""
    count = 0
    with _csv_text(out, head, bom) as text:
        for chunk, rows in chunks:
            text.write(chunk)
            count += rows
    return count


def action_rows(records: Iterable[Stored], template: Template, kinds: tuple[str, ...]) -> Iterator[Sequence[str]]:
    row = action_row_builder(template)
    return (row(values) for values in records if kind_of(values) in kinds)


def _written_lines(
    store: QueryStore, query: RecordQuery, rows: Page, template: Template, lines: list[str | None]
) -> list[str | None]:
    """`lines` with the ones the store left to Python (None) written by action_rows, from their
    stored values read again (from the first of them on, in storage order)."""
    missing = {found[0] for found, line in zip(rows, lines, strict=True) if line is None}
    values: dict[int, Stored] = {}
    again = replace(query, after_seq=min(missing) - 1)
    while len(values) < len(missing):
        page = store.query_columns(again, EXPORT_COLUMNS)
        values.update((v[0], v) for v in page if v[0] in missing)
        if len(page) < again.limit:
            break
        again = replace(again, after_seq=page[-1][0])
    row = action_row_builder(template)
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    done: list[str | None] = []
    for found, line in zip(rows, lines, strict=True):
        if line is None:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(row(values[found[0]]))
            line = buffer.getvalue()
        done.append(line)
    return done


def _store_lines(
    store: QueryStore, selection: Selection, template: Template, kinds: tuple[str, ...],
    on_page: Callable[[int], None] | None,
) -> Iterator[tuple[str, int]] | None:
    """The action rows' CSV text a page at a time, written by the store (QueryStore.query_csv_lines)
    and the account cells by Python; None when the store or the template cannot."""
    line = action_line(template, kinds, selection.where)
    if line is None:
        return None
    probe = RecordQuery(workspace=selection.workspaces[0] if selection.workspaces else "", limit=1)
    if store.query_csv_lines(probe, line) is None:
        return None
    holes = sum(1 for _, form in line.cells if form == "account")

    def lines() -> Iterator[tuple[str, int]]:
        account = account_cell
        # rows: (seq, account_domain, email, *parts)
        for query, rows in _pages(selection, lambda q: store.query_csv_lines(q, line) or []):
            if on_page is not None:
                on_page(len(rows))
            if holes == 1:
                text = [None if r[3] is None else f"{r[3]}{account(r[1], r[2])}{r[4]}\r\n" for r in rows]
            elif holes == 0:
                text = [None if r[3] is None else f"{r[3]}\r\n" for r in rows]
            else:
                text = [None if r[3] is None else account(r[1], r[2]).join(r[3:]) + "\r\n" for r in rows]
            if None in text:
                text = _written_lines(store, query, rows, template, text)
            yield "".join(cast("list[str]", text)), len(text)

    return lines()


def _counted(
    records: Iterable[Stored], kinds: tuple[str, ...], on_page: Callable[[int], None] | None
) -> Iterator[Stored]:
    """`records`, calling `on_page(n)` per page of records of `kinds`: the rows written, as the
    store-written path counts them (so a progress bar means the same on either path)."""
    if on_page is None:
        yield from records
        return
    counted = 0
    for values in records:
        if kind_of(values) in kinds:
            counted += 1
            if counted == PAGE_SIZE:
                on_page(counted)
                counted = 0
        yield values
    if counted:
        on_page(counted)


def account_rollup(records: Iterable[Stored], cancelled: Callable[[], bool] | None = None) -> AccountRollup:
    rollup = AccountRollup()
    rest = iter(records)
    while page := list(itertools.islice(rest, PAGE_SIZE)):
        if cancelled is not None and cancelled():
            raise Cancelled
        rollup.add_all(page)
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
    if kind == "actions":
        fast = _store_lines(store, selection, template, action_kinds, on_page)
        if fast is not None:
            return write_text(out, header(template, kind), fast, bom)
        records = _counted(stream_records(store, selection), action_kinds, on_page)
        return write_rows(out, header(template, kind), action_rows(records, template, action_kinds), bom)
    rollup = account_rollup(stream_records(store, selection, on_page, ACCOUNT_COLUMNS), cancelled)
    return write_rows(out, header(template, kind), rollup.rows(template), bom)
