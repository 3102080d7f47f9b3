"""The text dialects of database exports (docs/bitrix.md lists the commands that write them).

- RFC 4180 CSV (`psql --csv`, `\\copy ... CSV HEADER`, spreadsheets): the csv module reads it.
- MySQL's escaped text: `mysql --batch` (TAB separated, `NULL` for null) and
  `SELECT ... INTO OUTFILE` (any separator, `\\N` for null, optionally enclosed in quotes). A
  backslash escapes the next character: `\\0 \\b \\n \\r \\t \\Z \\N` are named, any other character
  (the separator, the quote, a newline, the backslash itself) stands for itself. `psql -A` output
  written with the escaping query of docs/bitrix.md is read the same way.

`split_escaped` parses one record of the second kind; None means the record goes on in the next
physical line (an escaped newline, or a newline inside quotes).
"""

from __future__ import annotations

import re

DELIMITERS = ("\t", ";", ",")
NULL = None  # what a NULL cell is in the cells of split_escaped
_NAMED = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
FOOTER = re.compile(r"\(\d+ rows?\)")  # psql's footer, when -P footer=off was forgotten


def header_delimiter(line: str) -> str:
    """The separator of a header line: column names hold none of them, so the most frequent."""
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties: TAB, then ;, then , (DELIMITERS order)
    return best if counts[best] else ","


def data_delimiter(line: str, width: int) -> str:
    """The separator of a header-less escaped line with `width` columns: the one that splits it
    into exactly that many cells (escaped and quoted separators do not count)."""
    for d in DELIMITERS:
        cells = split_escaped(line.rstrip("\r\n"), d)
        if cells is not None and len(cells) == width:
            return d
    return header_delimiter(line)


def split_escaped(text: str, delimiter: str, quote: str = '"') -> list | None:
    """The cells of one MySQL-escaped record (without its final newline), None for a NULL cell;
    or None when the record is not complete yet."""
    if "\\" not in text and quote not in text:
        return [None if c == "NULL" else c for c in text.split(delimiter)]
    cells: list = []
    cell: list[str] = []
    null = False
    quoted = False          # inside an enclosure
    was_quoted = False      # this cell was enclosed (then NULL is text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 == n:
                return None  # an escaped line end: the value goes on in the next line
            nxt = text[i + 1]
            if nxt == "N" and not cell and not quoted and (i + 2 == n or text[i + 2] == delimiter):
                null = True
            else:
                cell.append(_NAMED.get(nxt, nxt))
            i += 2
            continue
        if quoted:
            if ch == quote:
                if i + 1 < n and text[i + 1] == quote:  # a doubled quote inside an enclosure
                    cell.append(quote)
                    i += 2
                    continue
                quoted = False
            else:
                cell.append(ch)
            i += 1
            continue
        if ch == quote and not cell and not was_quoted:
            quoted = was_quoted = True
        elif ch == delimiter:
            cells.append(_cell(cell, null, was_quoted))
            cell, null, was_quoted = [], False, False
        else:
            cell.append(ch)
        i += 1
    if quoted:
        return None  # a newline inside an enclosed value
    cells.append(_cell(cell, null, was_quoted))
    return cells


def _cell(chars: list[str], null: bool, quoted: bool):
    if null:
        return None
    text = "".join(chars)
    return None if text == "NULL" and not quoted else text
