"""Cells a spreadsheet opens as text, never as a formula.

CSV injection (OWASP, https://owasp.org/www-community/attacks/CSV_Injection): a cell that starts
with `=`, `+`, `-` or `@`, or with a tab or carriage return that some programs skip before such a
character, is run as a formula by Excel, LibreOffice and Google Sheets. A product name or email
from a record is text someone else chose, so each text cell starting with one of those characters
gets a leading `'`, which the programs show as text and hide. Numbers and times are written by
spanmeter itself (never negative) and are left as they are.

Quoting (commas, double quotes, line breaks inside a cell) is Python's `csv` module's, RFC 4180
style with CRLF line ends. Files are UTF-8; `bom` puts a byte-order mark first, which Excel needs
to read UTF-8 (else it reads the file in the system's code page and garbles non-ASCII text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Final

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
BOM: Final = "\ufeff"


def safe_text(value: str) -> str:
    """The cell of a text value: as is, or with a leading `'` if it would start a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """The rows as CSV text: RFC 4180 quoting where a cell needs it, CRLF line ends."""
    buffer = io.StringIO()
    csv.writer(buffer, dialect="excel").writerows(rows)
    return buffer.getvalue()
