"""Output: JSON for scripts, aligned tables on a terminal, tab-separated lines when piped.

stdout carries data, stderr carries messages. Styling may change when piped; content never does.
Stored values (names, logins, error texts) are never interpreted: control characters, C1 codes
and bidi overrides are shown escaped, and nothing here parses markup (SPEC §5 terminal safety).
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata

from ..errors import B24Error

# C0 (but newline in messages), DEL, C1, and the bidi/format controls that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_UNSAFE_CELL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# JSON escapes C0 itself; these it leaves raw (ensure_ascii=False), so they are escaped here.
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
FORMATS = ("table", "tsv", "csv", "json")
# Columns whose values are never broken or cut in a table (SPEC: emails, logins, timestamps).
_HARD = {"login", "email", "phone", "recipient", "id", "at", "created_at", "expires_at", "sent_at", "state",
         "status", "channel", "kind", "action", "setting", "source", "actor", "has_password", "value"}
_RED = {"blocked", "failed"}
CHUNK = 200


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str, *, cell: bool = False) -> str:
    """Text with every control character shown as an escape (\\x1b, \\u202e), so it cannot act."""
    if text.isprintable():  # the common case, checked in C: no control or format character at all
        return text
    return (_UNSAFE_CELL if cell else _UNSAFE).sub(_escape, text)


def _json_safe(text: str) -> str:
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colour_on(stream=None) -> bool:
    return is_tty(stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def emit_json(obj) -> None:
    # JSON escapes C0 itself; C1 and bidi controls are escaped too so a terminal never acts on them.
    text = json.dumps(obj, ensure_ascii=False, indent=2)
    sys.stdout.write(_json_safe(text) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A message for the person at the terminal (stderr)."""
    sys.stderr.write(safe(message) + "\n")
    sys.stderr.flush()


def line(text: str) -> None:
    """One line of data on stdout."""
    sys.stdout.write(safe(text) + "\n")


def error(err: B24Error, as_json: bool) -> None:
    if as_json:
        sys.stderr.write(_json_safe(json.dumps(err.to_json(), ensure_ascii=False)) + "\n")
    else:
        text = f"error: {err.message}"
        if err.hint:
            text += f"\nhint: {err.hint}"
        sys.stderr.write(safe(text) + "\n")
    sys.stderr.flush()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    return safe(str(value), cell=True)


def width_of(text: str) -> int:
    """Terminal cells: wide (CJK) characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - width_of(text))


def _cut(text: str, width: int) -> str:
    if width_of(text) <= width:
        return text
    out, used = "", 0
    for c in text:
        w = width_of(c)
        if used + w > width - 1:
            break
        out, used = out + c, used + w
    return out + "…"


def terminal_size() -> tuple[int, int]:
    import shutil

    size = shutil.get_terminal_size((100, 24))
    return max(size.columns, 20), max(size.lines, 5)


class _Sink:
    """Lines to stdout; on a terminal, through $PAGER (`less -FRX`) once they exceed one screen."""

    def __init__(self, page: bool):
        self.page = page and is_tty() and bool(os.environ.get("PAGER", "less -FRX").strip())
        self.height = terminal_size()[1]
        self.held: list[str] | None = [] if self.page else None
        self.pager = None

    def write(self, text: str) -> None:
        if self.held is not None:
            self.held.append(text)
            if len(self.held) >= self.height - 1:
                self._start_pager()
            return
        out = self.pager.stdin if self.pager else sys.stdout
        out.write(text + "\n")

    def _start_pager(self) -> None:
        import shlex
        import subprocess

        held, self.held = self.held, None
        try:
            self.pager = subprocess.Popen(shlex.split(os.environ.get("PAGER", "less -FRX")), stdin=subprocess.PIPE,
                                          text=True, encoding="utf-8", errors="replace")
        except OSError:  # no pager installed: print straight to the terminal
            self.pager = None
        for text in held:
            self.write(text)

    def close(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            for text in held:
                self.write(text)
        if self.pager is not None:
            try:
                self.pager.stdin.close()
            except BrokenPipeError:
                pass
            self.pager.wait()
        else:
            sys.stdout.flush()


def _layout(columns, sample: list[list[str]], total: int):
    """Column widths for a terminal `total` cells wide, or None when only blocks would fit."""
    widths = [max([width_of(h)] + [width_of(r[i]) for r in sample]) for i, (_, h) in enumerate(columns)]
    avail = total - 2 * (len(columns) - 1)
    if sum(widths) <= avail:
        return widths
    soft = [i for i, (key, _) in enumerate(columns) if key not in _HARD]
    hard_sum = sum(w for i, w in enumerate(widths) if i not in soft)
    floors = {i: min(widths[i], max(width_of(columns[i][1]), 6)) for i in soft}
    room = avail - hard_sum
    if not soft or room < sum(floors.values()):
        return None
    extra = room - sum(floors.values())
    want = sum(widths[i] - floors[i] for i in soft) or 1
    for i in soft:
        widths[i] = floors[i] + (widths[i] - floors[i]) * extra // want
    return widths


def table(columns: list[tuple[str, str]], rows, title: str | None = None, *, fmt: str | None = None,
          headers: bool = True, page: bool = False) -> int:
    """columns: (key, heading); rows: dicts, any iterable (rendered as they come, in chunks).

    fmt: table (aligned; one record per block on a narrow terminal), tsv, csv; default: table on
    a terminal, tsv when piped. Returns the number of rows printed.
    """
    fmt = fmt or ("table" if is_tty() else "tsv")
    if fmt == "tsv":
        if headers:
            sys.stdout.write("\t".join(h for _, h in columns) + "\n")
        n = 0
        for row in rows:
            sys.stdout.write("\t".join(_cell(row.get(key)) for key, _ in columns) + "\n")
            n += 1
        return n
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        if headers:
            writer.writerow([h for _, h in columns])
        n = 0
        for row in rows:
            writer.writerow([_formula_safe(_csv_cell(row.get(key))) for key, _ in columns])
            n += 1
        return n
    return _aligned(columns, rows, title, headers, page)


def _csv_cell(value) -> str:
    """As in a table, but nothing is an empty cell (not "-")."""
    if value is None or value == [] or value == ():
        return ""
    return _cell(value)


def _formula_safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection);
    an E.164 phone number (+ and digits only) is a plain number to a spreadsheet and stays as it is."""
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(r"\+\d+", text):
        return "'" + text
    return text


def _aligned(columns, rows, title, headers, page) -> int:
    total = terminal_size()[0]
    colour = colour_on()
    sink = _Sink(page)
    it = iter(rows)
    n, widths, blocks = 0, None, False
    try:
        if title:
            sink.write(safe(title))
        while True:
            chunk = [[_cell(row.get(key)) for key, _ in columns] for _, row in zip(range(CHUNK), it)]
            if not chunk:
                break
            if widths is None and not blocks:
                widths = _layout(columns, chunk, total)
                blocks = widths is None
                if not blocks and headers:
                    head = "  ".join(_pad(h, w) for (_, h), w in zip(columns, widths)).rstrip()
                    sink.write(f"\033[1m{head}\033[0m" if colour else head)
            for cells in chunk:
                sink.write(_block(columns, cells, colour) if blocks else _row(columns, cells, widths, colour))
                n += 1
    finally:
        sink.close()
    return n


def _paint(key: str, text: str, colour: bool) -> str:
    return f"\033[31m{text}\033[0m" if colour and key in ("state", "status") and text.strip() in _RED else text


def _row(columns, cells, widths, colour) -> str:
    parts = []
    for (key, _), text, w in zip(columns, cells, widths):
        if key not in _HARD:
            text = _cut(text, w)
        parts.append(_paint(key, _pad(text, w), colour))
    return "  ".join(parts).rstrip()


def _block(columns, cells, colour) -> str:
    width = max(width_of(h) for _, h in columns)
    return "\n".join(f"{_pad(h + ':', width + 1)} {_paint(key, text, colour)}"
                     for (key, h), text in zip(columns, cells)) + "\n"


def fields(pairs: list[tuple[str, object]], title: str | None = None) -> None:
    """Key/value lines, aligned."""
    if title:
        sys.stdout.write(safe(title) + "\n")
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"  {key.ljust(width)}  {_cell(value)}\n")


def more_note(shown: int, remaining: int | None, what: str) -> None:
    """On stderr: the listing was cut by --limit (or its default)."""
    count = f"{remaining} more" if remaining else "more"
    info(f"{count} {what} not shown (the first {shown}) — use --limit N, or --limit 0 for all.")


def account(acc: dict) -> None:
    fields([
        ("login", acc["login"]),
        ("name", " ".join(p for p in (acc.get("name"), acc.get("last_name")) if p) or None),
        ("email", acc["email"]),
        ("phone", acc["phone"]),
        ("language", acc["lang"]),
        ("state", acc["state"]),
        ("password", "set" if acc["has_password"] else "none"),
        ("social", acc["social"]),
        ("pending", acc["pending"]),
        ("must change", acc["must_change_password"]),
        *([("external", acc["external"])] if acc.get("external") else []),
        *([("portal ID", acc["portal_id"])] if acc.get("portal_id") is not None else []),
    ])


ACCOUNT_COLUMNS = [("login", "Login"), ("name", "Name"), ("last_name", "Last name"), ("email", "Email"),
                   ("phone", "Phone"), ("state", "State"), ("has_password", "Password"), ("social", "Social"),
                   ("external", "External")]
