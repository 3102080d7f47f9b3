"""CSV files the tool writes (the `bulk reset --out` passwords file): safe to open in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@`, TAB or CR is run as a formula by Excel, LibreOffice
and Google Sheets (OWASP "CSV injection"). Such a cell is written with a `'` in front, which
spreadsheets read as "this is text". So that the rule can be undone exactly, a cell that already
starts with `'` gets one more. A reader recovers the exact value by removing ONE leading `'` when
there is one (`unquote`); every other cell is the value itself. Example: the password `=x9!` is
written `'=x9!`, the password `'abc` is written `''abc`.
"""

from __future__ import annotations

import csv
import io

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MARK = "'"


def quote(value: str) -> str:
    """The cell as written."""
    return MARK + value if value[:1] in FORMULA_STARTS or value[:1] == MARK else value


def unquote(cell: str) -> str:
    """The exact value of a cell written by `quote`."""
    return cell[1:] if cell[:1] == MARK else cell


def rows_text(rows) -> str:
    """CSV lines (\\n-terminated, csv-quoted where needed) with every cell passed through `quote`."""
    buffer = io.StringIO()
    # "\r\n" as the terminator the writer knows makes it quote any cell holding a CR or LF;
    # the lines themselves end in "\n" (each record is written alone, then its CRLF replaced).
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        writer.writerow([quote(str(cell)) for cell in row])
        lines.append(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()
    return "".join(lines)
