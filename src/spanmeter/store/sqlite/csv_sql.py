"""CSV lines of records, written by SQLite itself (QueryStore.query_csv_lines).

`spanmeter export csv` writes a million rows; formatting each cell in Python (times, exact money,
the formula check, the `csv` module's quoting) cost more than reading the records. Here SQLite
writes the line in C, and Python only fills in the account domain (crm/domains.py: IDNA and the
free-mail lists are Python's) between the parts.

Every format is the one crm/rows.py and crm/templates.py write in Python, to the byte:
- quoting as Python's `csv` module (excel dialect, QUOTE_MINIMAL): a cell holding a comma, a
  double quote, CR or LF is put in double quotes, its double quotes doubled;
- times from the integer nanoseconds (no float): datetime() of the whole seconds, then the
  fraction's digits from `fraction + 10^9`, truncated as Python's integer division does for
  times since 1970;
- money: integer nano-USD as an exact decimal string (item_sql.py's, as the query API's JSON).
A record SQL cannot write exactly (a time before 1970, where SQLite's integer division truncates
toward zero and Python's floors; a quantity not in plain digits) gets no line: the caller writes it.
tests/crm/test_fast_lines.py compares both writers on records made to be awkward.

Most cells need neither quotes nor the formula check, and testing every cell in SQL for them cost
as much as reading the row. So a page is first read with its text cells as they are, separated by
a control character (`raw_line_select`), and checked in Python over the whole page at once with
C-speed substring searches (`plain_lines`): a page with no comma, quote, line break, formula start
or stray separator in it is the CSV already, once the separators become commas. Only the rows a
check flags are read again with every cell quoted and checked by SQL (`line_select`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

from spanmeter.store.queries import CsvFormat, CsvLine, CsvLines
from spanmeter.store.schema import COLUMNS
from spanmeter.store.sqlite.item_sql import _PLAIN_QUANTITY, _QUANTITY, _money

# A cell the csv module quotes: a comma, a double quote, CR or LF anywhere in it.
_NEEDS_QUOTES: Final = "GLOB '*[,\"\r\n]*'"
# A cell a spreadsheet runs as a formula (crm/cells.py FORMULA_STARTS). Every such first
# character sorts before 'A': the comparison, cheaper than substr, spares most cells the rest.
_FORMULA: Final = "{c} < 'A' AND substr({c}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13))"
# Between the cells of a raw line, and between the parts of a page when it is checked: control
# characters a cell rarely holds (one that does shows up in the separator counts).
_CELL: Final = "\x1f"
_PART: Final = "\x1e"
# Anything in a page of raw lines that makes a cell differ from its CSV form: a character the csv
# module quotes, a formula start at the beginning of a cell (after a separator).
_QUOTED: Final = (",", '"', "\r", "\n")
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t")  # and CR, quoted anyway
_TIMES: Final = frozenset({"rfc3339", "millis_utc", "unix_millis", "date"})
_TOKENS: Final = (
    "CASE WHEN kind = 'llm' THEN COALESCE(total_tokens, CASE WHEN input_tokens IS NULL AND output_tokens IS NULL"
    " THEN NULL ELSE COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) END) END"
)


def _seconds(column: str) -> str:
    """yyyy-MM-ddTHH:mm:ss of a time since 1970 (datetime(): cheaper than strftime)."""
    return f"replace(datetime({column} / 1000000000, 'unixepoch'), ' ', 'T')"


def _fraction(column: str, digits: int) -> str:
    """The first `digits` digits of the fraction of a second, truncated (cheaper than printf)."""
    return f"substr({column} % 1000000000 + 1000000000, 2, {digits})"


def _quoted(text: str) -> str:
    return f"'\"' || replace({text}, '\"', '\"\"') || '\"'"


def _text(column: str, *, formula_check: bool) -> str:
    value = f"CASE WHEN {_FORMULA.format(c=column)} THEN '''' || {column} ELSE {column} END" if formula_check else column
    return f"CASE WHEN {column} IS NULL THEN '' WHEN {column} {_NEEDS_QUOTES} THEN {_quoted(value)} ELSE {value} END"


def _cell(column: str, form: CsvFormat) -> str:
    if form == "text":
        return _text(column, formula_check=True)
    if form == "plain":
        return _text(column, formula_check=False)
    if form == "tokens":
        return f"COALESCE({_TOKENS}, '')"
    if form == "quantity":
        return f"COALESCE({_QUANTITY.replace('quantity', column)}, '')"
    if form == "money":
        return f"COALESCE({_money(column)}, '')"
    if form == "rfc3339":
        return f"{_seconds(column)} || '.' || {_fraction(column, 6)} || 'Z'"
    if form == "millis_utc":
        return f"{_seconds(column)} || '.' || {_fraction(column, 3)} || 'Z'"
    if form == "unix_millis":
        return f"({column} / 1000000)"
    if form == "date":
        return f"date({column} / 1000000000, 'unixepoch')"
    raise ValueError(f"no SQL for CSV cell format {form!r}")


def line_select(line: CsvLine, *, raw: bool = False) -> str:
    """The SELECT list (after seq) of a CsvLine: its columns, then its parts, the first NULL for
    the records Python writes. `raw`: text cells as they are (NULL as empty), separated by _CELL."""
    unknown = [c for c, _ in line.cells if c not in COLUMNS] + [c for c in line.columns if c not in COLUMNS]
    if unknown:  # names from code, never from a client; checked all the same
        raise ValueError(f"not a records column: {', '.join(unknown)}")
    parts: list[list[str]] = [[]]
    needs_python: list[str] = []
    for index, (column, form) in enumerate(line.cells):
        if index:
            parts[-1].append(f"'{_CELL}'" if raw else "','")
        if form == "account":
            parts.append([])
            continue
        parts[-1].append(f"COALESCE({column}, '')" if raw and form in ("text", "plain") else _cell(column, form))
        if form in _TIMES:
            needs_python.append(f"{column} < 0")
        elif form == "quantity":
            needs_python.append(f"NOT {_PLAIN_QUANTITY.replace('quantity', column)}")
    texts = [" || ".join(items) if items else "''" for items in parts]
    if needs_python:
        texts[0] = f"CASE WHEN {' OR '.join(dict.fromkeys(needs_python))} THEN NULL ELSE {texts[0]} END"
    return ", ".join([*line.columns, *texts])


def in_filters(where: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (on `records r`) and parameters of (column, allowed values) pairs."""
    clauses, params = [], []  # type: list[str], list[Any]
    for column, values in where:
        if column not in COLUMNS:  # names from code, as line_select's
            raise ValueError(f"not a records column: {column}")
        clauses.append(f"r.{column} IN ({', '.join('?' * len(values))})" if values else "0")
        params += values
    return clauses, params


def plain_lines(
    rows: list[tuple[Any, ...]], line: CsvLine, quoted: Callable[[list[int]], list[tuple[Any, ...]]],
) -> CsvLines:
    """The lines of a page read with `line_select(line, raw=True)` (seq first), as
    `line_select(line)` would have written them: the page checked at once, else row by row, and
    the rows that differ from their CSV form read again by seq (`quoted(seqs)`, seq first)."""
    first = 1 + len(line.columns)  # seq, the columns, then the parts
    by_column = list(zip(*rows, strict=True)) or [() for _ in range(first + _parts(line))]
    seqs, columns, parts = by_column[0], by_column[1:first], by_column[first:]
    count, separators, text_first = len(rows), len(line.cells) - 1, line.cells[0][1] == "text"
    if None not in parts[0]:
        text = _PART.join(itertools.chain.from_iterable(parts))
        if _plain(text, count * separators, count * len(parts) - 1, text_first=text_first):
            flat = text.replace(_CELL, ",").split(_PART)
            return CsvLines(seqs, columns, [flat[j * count : (j + 1) * count] for j in range(len(parts))])
    again = [
        row[0] for row in rows
        if row[first] is not None and not _plain(_PART.join(row[first:]), separators, len(parts) - 1, text_first=text_first)
    ]
    requoted = {row[0]: row[first:] for row in quoted(again)} if again else {}
    lines = [
        requoted[row[0]] if row[0] in requoted
        else row[first:] if row[first] is None
        else tuple(part.replace(_CELL, ",") for part in row[first:])
        for row in rows
    ]
    return CsvLines(seqs, columns, list(zip(*lines, strict=True)))


def _parts(line: CsvLine) -> int:
    return 1 + sum(1 for _, form in line.cells if form == "account")


def _plain(text: str, cells: int, parts: int, *, text_first: bool) -> bool:
    """Is `text` (raw lines' parts joined by _PART) its CSV form once _CELL becomes a comma?
    Single characters first: those searches are memchr-fast, a two-character one is not."""
    if any(found in text for found in _QUOTED):
        return False
    for start in _FORMULA_STARTS:
        # A text cell starts after a _CELL; a part (after _PART, or the text's start) only when
        # the line's first cell is a text cell: the other parts start with a _CELL.
        if start in text and (
            _CELL + start in text or (text_first and (text.startswith(start) or _PART + start in text))
        ):
            return False
    return text.count(_CELL) == cells and text.count(_PART) == parts
