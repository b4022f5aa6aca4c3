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
from typing import Any, BinaryIO, Final, TypeVar, cast

from spanmeter.crm.cells import BOM, csv_text
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
from spanmeter.store.queries import CsvLines, RecordQuery

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
    seqs: tuple[int, int] | None = None  # [first, end): a share of one workspace's records (crm/parallel.py)


Page = list[tuple[Any, ...]]
P = TypeVar("P")


def _row_seqs(page: Page) -> list[int]:
    return [row[0] for row in page]


def _line_seqs(page: CsvLines) -> Sequence[int]:
    return page.seqs


_NO_LINES: Final = CsvLines((), (), ())


def first_page(selection: Selection, workspace: str) -> RecordQuery:
    """The query of the first page of `selection` in `workspace` (storage order)."""
    first, end = selection.seqs or (None, None)
    return RecordQuery(
        workspace=workspace, order="asc", limit=PAGE_SIZE,
        equals=(("customer_id", selection.customer),) if selection.customer is not None else (),
        from_ns=selection.from_ns, to_ns=selection.to_ns,
        after_seq=None if first is None else first - 1, before_seq=end,
    )


def _pages(
    selection: Selection, read: Callable[[RecordQuery], P], seqs: Callable[[P], Sequence[int]],
) -> Iterator[tuple[RecordQuery, P]]:
    """(query, page) of every page of the selection, `read` reading each (`seqs`: a page's seqs)."""
    for workspace in selection.workspaces:
        query = first_page(selection, workspace)
        while True:
            page = read(query)
            found = seqs(page)
            if found:
                yield query, page
            if len(found) < PAGE_SIZE:
                break
            query = replace(query, after_seq=found[-1])


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
    for _query, page in _pages(selection, lambda query: store.query_columns(query, columns), _row_seqs):
        if on_page is not None:
            on_page(len(page))
        if check:
            yield from (row for row in page if matches(where, row))
        else:
            yield from page


@contextlib.contextmanager
def _csv_out(out: BinaryIO, head: Sequence[str], bom: bool) -> Iterator[io.TextIOWrapper]:
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
    with _csv_out(out, head, bom) as text:
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
    with _csv_out(out, head, bom) as text:
        for chunk, rows in chunks:
            text.write(chunk)
            count += rows
    return count


def action_rows(records: Iterable[Stored], template: Template, kinds: tuple[str, ...]) -> Iterator[Sequence[str]]:
    row = action_row_builder(template)
    return (row(values) for values in records if kind_of(values) in kinds)


def _written_lines(
    store: QueryStore, query: RecordQuery, missing: list[int], template: Template
) -> dict[int, str]:
    """The action rows (without their CRLF) of the records the store left to Python, by seq: from
    their stored values read again (from the first of them on, in storage order)."""
    wanted = set(missing)
    values: dict[int, Stored] = {}
    again = replace(query, after_seq=min(wanted) - 1)
    while len(values) < len(wanted):
        page = store.query_columns(again, EXPORT_COLUMNS)
        values.update((v[0], v) for v in page if v[0] in wanted)
        if len(page) < again.limit:
            break
        again = replace(again, after_seq=page[-1][0])
    row = action_row_builder(template)
    return {seq: csv_text([row(values[seq])])[:-2] for seq in missing}


def store_lines(
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
    stride = 2 * holes + 2  # per row: the parts with the account cell between them, then CRLF

    def lines() -> Iterator[tuple[str, int]]:
        for query, page in _pages(selection, lambda q: store.query_csv_lines(q, line) or _NO_LINES, _line_seqs):
            count = len(page.seqs)
            if on_page is not None:
                on_page(count)
            parts = [list(part) for part in page.parts]
            # The account cell of each row: account_domain, email (LINE_COLUMNS); cached by value.
            accounts = list(map(account_cell, *page.columns)) if holes else []
            if None in parts[0]:
                missing = [seq for seq, text in zip(page.seqs, parts[0], strict=True) if text is None]
                written = _written_lines(store, query, missing, template)
                for index, seq in enumerate(page.seqs):
                    if seq in written:  # the whole line in the first part, the rest empty
                        parts[0][index] = written[seq]
                        for rest in parts[1:]:
                            rest[index] = ""
                        if holes:
                            accounts[index] = ""
            # Interleaved by slices (C loops), not a string built per row.
            text: list[str | None] = [None] * (count * stride)
            for index, part in enumerate(parts):
                text[2 * index :: stride] = part
            for index in range(holes):
                text[2 * index + 1 :: stride] = accounts
            text[stride - 1 :: stride] = ["\r\n"] * count
            yield "".join(cast("list[str]", text)), count

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
        fast = store_lines(store, selection, template, action_kinds, on_page)
        if fast is not None:
            return write_text(out, header(template, kind), fast, bom)
        records = _counted(stream_records(store, selection), action_kinds, on_page)
        return write_rows(out, header(template, kind), action_rows(records, template, action_kinds), bom)
    rollup = account_rollup(stream_records(store, selection, on_page, ACCOUNT_COLUMNS), cancelled)
    return write_rows(out, header(template, kind), rollup.rows(template), bom)
