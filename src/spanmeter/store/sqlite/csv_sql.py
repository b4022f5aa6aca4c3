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
"""

from __future__ import annotations

from typing import Any, Final

from spanmeter.store.queries import CsvFormat, CsvLine
from spanmeter.store.schema import COLUMNS
from spanmeter.store.sqlite.item_sql import _PLAIN_QUANTITY, _QUANTITY, _money

# A cell the csv module quotes: a comma, a double quote, CR or LF anywhere in it.
_NEEDS_QUOTES: Final = "GLOB '*[,\"\r\n]*'"
# A cell a spreadsheet runs as a formula (crm/cells.py FORMULA_STARTS). Every such first
# character sorts before 'A': the comparison, cheaper than substr, spares most cells the rest.
_FORMULA: Final = "{c} < 'A' AND substr({c}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13))"
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


def line_select(line: CsvLine) -> str:
    """The SELECT list (after seq) of a CsvLine: its columns, then its parts, the first NULL for
    the records Python writes."""
    unknown = [c for c, _ in line.cells if c not in COLUMNS] + [c for c in line.columns if c not in COLUMNS]
    if unknown:  # names from code, never from a client; checked all the same
        raise ValueError(f"not a records column: {', '.join(unknown)}")
    parts: list[list[str]] = [[]]
    needs_python: list[str] = []
    for index, (column, form) in enumerate(line.cells):
        if index:
            parts[-1].append("','")
        if form == "account":
            parts.append([])
            continue
        parts[-1].append(_cell(column, form))
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
