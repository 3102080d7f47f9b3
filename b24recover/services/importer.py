"""Bulk import of accounts: `user import` (SPEC §2) and Bitrix `b_user` exports (SPEC §4).

The file is streamed, never loaded whole: physical lines are read one at a time (each capped at
64 KiB), decoded one at a time, and fed to the csv or json parser. A problem in a row (bad UTF-8,
a NUL byte, an over-long line, a malformed address, an unknown hash, a conflict) makes that row
*bad*: it is reported with its line number and the other rows are kept.

Rows are written in batches of BATCH_ROWS, each batch its own `BEGIN IMMEDIATE` transaction, so
a kill at any instant leaves whole batches only. Each committed batch writes one `user.import`
audit event (line range and counts), never one per row.

Three stages run as a pipeline: reading (this process), validating (email/phone parsing is the
expensive part: for long files it moves to helper processes) and writing (this process, which
owns the store). Conflict checks are made per batch with a few IN (...) queries; only rows that
hit something go through the precise per-row checks of `accounts.check_free`.

Choices worth knowing:
- A row with neither a password hash nor a social identity is imported without a password
  (has_password false): that person recovers access through a control string.
- Bitrix `EXTERNAL_AUTH_ID = socservices` rows become social-only accounts: no password (their
  PASSWORD column is ignored) and one social identity, provider "socservices", subject = LOGIN,
  because a b_user export does not carry the network's own user id.
- Bitrix LANGUAGE_ID values other than en/ru/de/it/pt fall back to the default language ("br",
  Brazilian Portuguese, becomes "pt"); other b_user columns (a real export has dozens) are ignored.
- In update mode an empty cell leaves the stored value as it is: an import never erases data.
"""

from __future__ import annotations

import bisect
import csv
import functools
import json
import os
import re
from collections import deque
from dataclasses import dataclass, field

from ..errors import B24Error
from ..store import imports as import_store
from ..store import users as user_store
from . import accounts
from . import identifiers as ids
from .context import Ctx
from . import bitrix, bitrix_hash, dialects
from .passwords import BCRYPT_SHA256, scheme_of

BATCH_ROWS = 5000  # rows validated together (and the most one transaction writes)
PART_ROWS = 1000   # rows of the first transaction; then sized by time (Writer)
PART_SECONDS = 0.4  # how long an import writes before it pauses for others (one transaction, about)
MAX_WINDOW = 0.6    # ...and at most, while its pauses find nobody waiting
MAX_LINE = 64 * 1024          # longer physical lines are bad rows
MAX_RECORD = 256 * 1024       # a quoted multi-line CSV record may not grow past this
BAD_KEPT = 10_000             # bad rows listed in the result; bad_count has them all
PARALLEL_AFTER = 4            # batches validated in-process before helper processes start...
PARALLEL_AT_ONCE = 2 << 20    # ...unless the input is a file this large: then at once
IMPORT_CACHE_KIB = 48 * 1024  # the store's page cache during an import

FORMATS = ("csv", "jsonl", "bitrix")
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "windows-1251": "cp1251", "cp1251": "cp1251"}
ENCODINGS_SHOWN = {"utf-8": "UTF-8", "cp1251": "windows-1251"}
CONFLICT_MODES = ("fail", "skip", "update")
FIELDS = ("login", "email", "phone", "name", "last_name", "lang", "password_hash", "social", "blocked")
LOGIN, EMAIL, PHONE, NAME, LAST_NAME, LANG, HASH, SOCIAL, BLOCKED = range(len(FIELDS))
BITRIX_COLUMNS = bitrix.COLUMNS + bitrix.OPTIONAL  # other b_user columns (a real export has dozens) are ignored
_TRUE = {"1", "true", "y", "yes"}
_FALSE = {"0", "false", "n", "no"}


@dataclass
class ImportResult:
    format: str
    dry_run: bool = False
    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    bad_count: int = 0
    bad: list = field(default_factory=list)
    on_bad: object = field(default=None, repr=False, compare=False)  # called with each bad row kept

    def add_bad(self, line: int, login, code: str, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < BAD_KEPT:
            if isinstance(login, str) and len(login) > 255:
                login = login[:255] + "…"
            self.bad.append({"line": line, "login": login, "code": code, "reason": reason})
            if self.on_bad is not None:
                self.on_bad(self.bad[-1])

    def to_json(self) -> dict:
        return {"read": self.read, "added": self.added, "updated": self.updated, "skipped": self.skipped,
                "unchanged": self.unchanged, "bad": self.bad, "bad_count": self.bad_count,
                "dry_run": self.dry_run, "format": self.format}


# ---- reading: physical lines ---------------------------------------------------------------

class _RecordTooLong(Exception):
    pass


class Lines:
    """Decoded physical lines of a binary stream, with their numbers and the bytes read so far.

    A line that cannot be used (over-long, NUL byte, invalid UTF-8) is still yielded, as a
    harmless stand-in, so the parser keeps its place; its problem waits in `problems` until the
    record that spans it is reported bad.
    """

    def __init__(self, stream, encoding: str = "utf-8"):
        self._stream = stream
        self.encoding = encoding
        self._peeked: list[bytes | None] = []
        self.line_no = 0
        self.bytes_read = 0
        self.record_bytes = 0
        self.problems: dict[int, str] = {}

    def _readline(self, limit: int) -> bytes:
        try:
            return self._stream.readline(limit)
        except OSError as exc:
            raise B24Error("invalid_input", f"reading stopped after line {self.line_no}: "
                           f"{exc.strerror or exc}") from None

    def _read_raw(self) -> bytes | None:
        raw = self._readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            self.bytes_read += len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest in bounded pieces
                raw = self._readline(MAX_LINE)
                self.bytes_read += len(raw)
            return None
        self.bytes_read += len(raw)
        return raw

    def peek(self) -> bytes:
        """The first raw line, kept to be read again (format detection); b"" if over-long."""
        if not self._peeked:
            self._peeked.append(self._read_raw())
        return self._peeked[0] or b""

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self._peeked.pop() if self._peeked else self._read_raw()
        if raw == b"":
            raise StopIteration
        self.line_no += 1
        if raw is None:
            self.problems.setdefault(self.line_no, "the line is longer than 64 KiB")
            text = "\n"
        else:
            if b"\x00" in raw:
                self.problems.setdefault(self.line_no, "the line contains a NUL byte")
                raw = raw.replace(b"\x00", b"")
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                self.problems.setdefault(self.line_no, f"the line is not valid {ENCODINGS_SHOWN[self.encoding]} "
                                                       f"(byte {exc.start + 1})")
                text = raw.decode(self.encoding, "replace")
            if self.line_no == 1:
                text = text.removeprefix("\ufeff")
        self.record_bytes += len(text)
        if self.record_bytes > MAX_RECORD:
            raise _RecordTooLong
        return text

    def take_problem(self, last_line: int) -> str | None:
        """The first problem of the lines up to last_line; they are all consumed."""
        found = None
        for line in sorted(k for k in self.problems if k <= last_line):
            reason = self.problems.pop(line)
            found = found or reason
        return found


# ---- reading: records ------------------------------------------------------------------------
#
# Reading only splits the file into records: (line, payload), the payload being the cells of a
# CSV row or the text of a JSON line; or a bad record (line, None, code, reason, login). Turning
# a payload into account fields is left to the validating stage, which may run in a helper.

def _bad(line: int, reason: str, login=None, code: str = "invalid_input") -> tuple:
    return (line, None, code, reason, login)


@dataclass(frozen=True)
class Layout:
    """How payloads map to FIELDS: csv (field, column) pairs, bitrix column name -> index."""

    fmt: str
    columns: tuple = ()
    login_at: int | None = None


def check_first_line(raw: bytes, encoding: str, header: bool) -> None:
    """File-level problems seen on line 1 (before anything is written): a binary file, the wrong
    encoding, a header broken by a bare carriage return."""
    if b"\x00" in raw:
        raise B24Error("invalid_input", "line 1: the file is binary (it contains NUL bytes), not a csv, jsonl or "
                       "b_user export", hint="Check the file name; see docs/bitrix.md for how to export b_user.")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        hint = "An old portal's export: add --encoding windows-1251." if encoding == "utf-8" else None
        raise B24Error("invalid_input", f"line 1: not valid {ENCODINGS_SHOWN[encoding]} (byte {exc.start + 1}); "
                       "the file is binary or in another encoding", hint=hint) from None
    body = text.rstrip("\n").removesuffix("\r")
    if header and "\r" in body:
        raise B24Error("invalid_input", f"line 1: the header has a bare carriage return (CR) at character "
                       f"{body.index(chr(13)) + 1}: the file mixes old Mac line ends with others",
                       hint="Save it with LF or CRLF line ends.")


def detect_format(name: str, first_line: bytes, encoding: str = "utf-8") -> str:
    """.jsonl -> jsonl; a header with LOGIN and EXTERNAL_AUTH_ID (any case) -> bitrix; else csv."""
    if name.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    text = first_line.decode(encoding, "replace").removeprefix("\ufeff")
    if text.lstrip().startswith("{"):
        return "jsonl"
    columns = set(bitrix.names(text.rstrip("\r\n").split(dialects.header_delimiter(text))))
    columns = {c.strip('"') for c in columns}
    return "bitrix" if {"LOGIN", "EXTERNAL_AUTH_ID"} <= columns else "csv"


class _EscapedReader:
    """Records of MySQL-escaped text (services/dialects.py) over Lines, like a csv.reader."""

    def __init__(self, lines: Lines, delimiter: str):
        self.lines, self.delimiter = lines, delimiter

    def __iter__(self):
        return self

    def __next__(self) -> list:
        text = ""
        while True:
            try:
                line = next(self.lines)
            except StopIteration:
                if text:
                    raise csv.Error("the file ends inside a value (an escaped line end or an open quote)") from None
                raise
            text += line
            body = text[:-1] if text.endswith("\n") else text
            cells = dialects.split_escaped(body.removesuffix("\r"), self.delimiter)
            if cells is not None:
                if len(cells) == 1 and dialects.FOOTER.fullmatch(cells[0] or ""):
                    text = ""
                    continue  # psql's "(21 rows)"
                return ["" if c is None else c for c in cells]
            if not line.endswith("\n"):
                raise csv.Error("the file ends inside a value (an escaped line end or an open quote)")


def _nulls_empty(cells: list[str]) -> list[str]:
    """Bitrix exports: NULL and \\N cells are empty (SPEC §4)."""
    return ["" if c in ("NULL", "\\N") else c for c in cells]


def _header(lines: Lines, reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise B24Error("invalid_input", "the file is empty: a header line is expected") from None
    except csv.Error as exc:
        raise B24Error("invalid_input", f"line 1: the header line cannot be read: {exc}") from None
    except _RecordTooLong:
        raise B24Error("invalid_input", "line 1: the header line cannot be read: it is too long") from None
    problem = lines.take_problem(lines.line_no)
    if problem:
        raise B24Error("invalid_input", f"line 1: the header line cannot be read: {problem}")
    names = [h.strip() for h in header]
    if "" in names:
        raise B24Error("invalid_input", f"column {names.index('') + 1} of the header has no name")
    seen = set()
    for n in names:
        if n.lower() in seen:
            raise B24Error("invalid_input", f"the column {n!r} appears twice in the header")
        seen.add(n.lower())
    return names


def _csv_layout(names: list[str]) -> Layout:
    lowered = [n.lower() for n in names]
    if "password" in lowered:
        raise B24Error("invalid_input", "the file has a clear-text 'password' column: an import takes hashes only "
                       "(password_hash); clear-text passwords are never accepted",
                       hint="Remove the column; people without a hash recover through a control string.")
    unknown = [n for n in names if n.lower() not in FIELDS]
    if unknown:
        raise B24Error("invalid_input", f"unknown column(s) {', '.join(map(repr, unknown))}; "
                       f"the columns are {', '.join(FIELDS)}")
    if "login" not in lowered:
        raise B24Error("invalid_input", "the header has no 'login' column")
    pairs = tuple((FIELDS.index(n), i) for i, n in enumerate(lowered))
    return Layout("csv", pairs, lowered.index("login"))


def _bitrix_layout(names: list[str]) -> Layout:
    upper = [n.upper() for n in names]
    if "LOGIN" not in upper:
        raise B24Error("invalid_input", "the b_user export has no LOGIN column")
    columns = tuple((c, upper.index(c)) for c in BITRIX_COLUMNS if c in upper)
    return Layout("bitrix", columns, upper.index("LOGIN"))


def _columns(names: list[str]) -> list[str]:
    """--columns A,B,...: checked like a header."""
    if not names or "" in names:
        raise B24Error("usage", "--columns needs the column names separated by commas, e.g. --columns ID,LOGIN,EMAIL")
    return names


def _table_records(lines: Lines, fmt: str, layout_out: list, columns: list[str] | None = None):
    first = lines.peek().decode(lines.encoding, "replace").removeprefix("\ufeff")
    if columns is not None:
        # A header-less file is an INTO OUTFILE export: MySQL-escaped, any separator.
        names = _columns(columns)
        reader = _EscapedReader(lines, dialects.data_delimiter(first, len(names)))
    else:
        delimiter = dialects.header_delimiter(first)
        # TAB: mysql --batch (or psql -A with docs/bitrix.md's escaping query), backslash-escaped.
        reader = _EscapedReader(lines, delimiter) if delimiter == "\t" else csv.reader(lines, delimiter=delimiter)
        names = _header(lines, reader)
    if fmt == "bitrix":
        names = bitrix.names(names)
    layout = _csv_layout(names) if fmt == "csv" else _bitrix_layout(names)
    layout_out.append(layout)
    width, login_at = len(names), layout.login_at
    nulls = fmt == "bitrix" and not isinstance(reader, _EscapedReader)  # the escaped reader knows NULL itself
    yield None  # the header is checked: the caller may start
    while True:
        start = lines.line_no + 1
        lines.record_bytes = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.take_problem(lines.line_no)
            yield _bad(start, f"broken CSV: {exc}")
            continue
        except _RecordTooLong:
            lines.take_problem(lines.line_no)
            yield _bad(start, "the row is longer than 256 KiB (an unclosed quote?)")
            continue
        if nulls:
            cells = _nulls_empty(cells)
        if lines.problems:
            problem = lines.take_problem(lines.line_no)
            if problem:
                yield _bad(start, problem, cells[login_at] if login_at < len(cells) else None)
                continue
        if len(cells) != width or not cells[login_at].strip():
            if not any(c.strip() for c in cells):
                continue  # a blank line, or a row of empty cells as spreadsheets write them
            if len(cells) != width:
                yield _bad(start, f"the row has {len(cells)} fields; the header has {width}",
                           cells[login_at] if login_at < len(cells) else None)
                continue
        yield (start, cells)


def _jsonl_records(lines: Lines, layout_out: list):
    layout_out.append(Layout("jsonl"))
    yield None
    for text in lines:
        line = lines.line_no
        lines.record_bytes = 0
        if lines.problems:
            problem = lines.problems.pop(line, None)
            if problem:
                yield _bad(line, problem)
                continue
        if text.strip():
            yield (line, text)


def records(lines: Lines, fmt: str, columns: list[str] | None = None) -> tuple[Layout, object]:
    """The layout and the records of the stream. The header is read and checked here, so a bad
    one raises B24Error before anything is written."""
    layout_out: list = []
    if fmt == "jsonl" and columns is not None:
        raise B24Error("usage", "--columns is for csv and bitrix files, not jsonl")
    gen = (_jsonl_records(lines, layout_out) if fmt == "jsonl"
           else _table_records(lines, fmt, layout_out, columns))
    next(gen)
    return layout_out[0], gen


def batches(rows, size: int = BATCH_ROWS):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- payload -> fields --------------------------------------------------------------------

def _flag(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{what} must be 1/0, true/false or Y/N")


def _socials(text: str) -> tuple | None:
    return tuple(s.strip() for s in text.split(";") if s.strip()) or None


def _csv_values(cells: list[str], layout: Layout) -> tuple:
    values = [None] * len(FIELDS)
    for f, index in layout.columns:
        cell = cells[index]
        text = cell.strip()
        if not text:
            continue
        if f == LOGIN:
            values[f] = cell  # spaces around a login are reported, not silently cut
        elif f == SOCIAL:
            values[f] = _socials(text)
        elif f == BLOCKED:
            values[f] = _flag(text, "blocked")
        else:
            values[f] = text
    return tuple(values)


def _bitrix_row(cells: list[str], layout: Layout) -> dict:
    """The cells of a b_user export as the row mapping services/bitrix.py reads."""
    return {name: cells[index] for name, index in layout.columns}


_JSON_TEXT = {"login", "email", "phone", "name", "last_name", "lang", "password_hash"}


def _json_object(text: str) -> dict:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("the line is not a JSON object")
    return obj


def _json_values(text: str) -> tuple:
    obj = _json_object(text)
    if "password" in obj:
        raise ValueError("a clear-text 'password' is never accepted: give password_hash")
    unknown = sorted(k for k in obj if k not in FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ValueError(f"unknown key(s) {shown}; the keys are {', '.join(FIELDS)}")
    values = []
    for f, name in enumerate(FIELDS):
        value = obj.get(name)
        if value is None or value == "" or value == []:
            values.append(None)
        elif name in _JSON_TEXT:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            values.append(value if f == LOGIN else (value.strip() or None))
        elif name == "social":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
                raise ValueError("social must be a string or a list of strings")
            values.append(_socials(";".join(items)))
        elif isinstance(value, bool):
            values.append(value)
        elif isinstance(value, int) and value in (0, 1):
            values.append(bool(value))
        elif isinstance(value, str):
            values.append(_flag(value, "blocked"))
        else:
            raise ValueError("blocked must be true/false, 1/0 or Y/N")
    return tuple(values)


def to_values(layout: Layout, payload) -> tuple:
    """A payload -> values in FIELDS order (None = not given). Raises ValueError."""
    if layout.fmt == "csv":
        return _csv_values(payload, layout)
    return _json_values(payload)


def _login_hint(layout: Layout, payload):
    if layout.fmt != "jsonl":
        return payload[layout.login_at] or None
    try:
        login = _json_object(payload).get("login")
    except ValueError:
        return None
    return login if isinstance(login, str) else None


# ---- validating (pure: runs in this process or in a helper) ------------------------------

@functools.lru_cache(maxsize=1)
def _email_rules():
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

    return DOT_ATOM_TEXT, frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    try:
        return ids.normalize_email("x@" + domain)[0].partition("@")[2]
    except B24Error:
        return None


def normalize_email(text: str) -> tuple[str, str]:
    """identifiers.normalize_email, with the domain part validated once per distinct domain.

    Plain ASCII dot-atom addresses (nearly all of a real export) take the fast path; anything
    else goes through the full validation. Both give the same answer (tests compare them).
    """
    text = ids.clean_text(text, "the email", max_len=320).strip()
    local, at, domain = text.partition("@")
    if at and text.isascii() and len(text) <= 254 and "@" not in domain and "xn--" not in domain.lower():
        atom, mailbox_names = _email_rules()
        if atom.match(local) and local.lower() not in mailbox_names:
            normal_domain = _domain(domain)
            if normal_domain is not None:
                display = f"{local}@{normal_domain}"
                return display, display.casefold()  # ASCII: NFC is the identity, so this is the email key
    return ids.normalize_email(text)


_PLAIN_PHONE = re.compile(r"\+?[0-9 ().\-/]{1,63}")
_PHONE_SEPARATORS = re.compile(r"[ ().\-/]")


def normalize_phone(text: str, region: str) -> str:
    """identifiers.normalize_phone, a fifth faster for the usual spellings.

    phonenumbers ignores these separators, but pays for walking over them: a number written
    with digits, spaces, dashes, dots, slashes and parentheses only is parsed without them.
    A number that fails is parsed again as written, so the message quotes it as written.
    """
    plain = text.strip(" ")
    if len(text) <= 64 and _PLAIN_PHONE.fullmatch(plain):
        try:
            return ids.normalize_phone(_PHONE_SEPARATORS.sub("", plain), region)
        except B24Error:
            pass
    return ids.normalize_phone(text, region)


def check_hash(value: str, column: str) -> str:
    """A password hash the tool can verify: its own bcrypt formats, or one Bitrix's
    Password::equals can verify (bitrix_hash: the length rule, no $6$rounds=)."""
    value = ids.clean_text(value, f"the {column}", max_len=512)
    if scheme_of(value) in (BCRYPT_SHA256, "bcrypt"):
        return value
    reason = bitrix_hash.refusal(value)
    if reason is not None:
        raise B24Error("invalid_input", f"the {column} is not a recognised hash: {reason}")
    return value


# A validated row: these fields, the keys it claims (see _keys_of), then the Bitrix ones.
(V_LOGIN, V_KEY, V_EMAIL, V_EMAIL_KEY, V_PHONE, V_NAME, V_LAST, V_LANG, V_HASH, V_SOCIAL, V_BLOCKED, V_KEYS,
 V_EXTERNAL, V_PROFILE_PHONE, V_PORTAL_ID, V_SOFT_PHONE) = range(16)


def login_claim(login_key: str, external: str | None) -> str:
    """The key a login claims: unique per (login, external id), as in Bitrix."""
    return "l:" + login_key + ("\x00" + external if external else "")


def _keys_of(login_key: str, email_key: str | None, phone: str | None, socials: tuple,
             external: str | None = None, portal_id: int | None = None, skeleton: str = "") -> tuple[str, ...]:
    """The identifiers a row claims; addresses share one name space, as in pending links.
    The login's claim comes first, then its look-alike skeleton's (both per external id)."""
    keys = [login_claim(login_key, external), "k:" + skeleton + ("\x00" + external if external else "")]
    if email_key:
        keys.append("a:" + email_key)
    if phone:
        keys.append("a:" + phone)
    keys.extend(f"s:{p}:{s}" for p, s in socials)
    if portal_id is not None:
        keys.append(f"p:{portal_id}")
    return tuple(keys)


def _skeleton(row: tuple) -> str:
    """The login's look-alike skeleton, from the row's second claim (without its external id)."""
    return row[V_KEYS][1][2:].split("\x00", 1)[0]


def without_soft_phone(row: tuple, unique_email: bool) -> tuple:
    """A Bitrix row whose PERSONAL_PHONE is shared with another account: it keeps the number as
    profile data only (SPEC §4), instead of being refused."""
    row = list(row)
    row[V_PHONE], row[V_SOFT_PHONE] = None, False
    row[V_KEYS] = _keys_of(row[V_KEY], row[V_EMAIL_KEY] if unique_email else None, None, row[V_SOCIAL],
                           row[V_EXTERNAL], row[V_PORTAL_ID], _skeleton(row))
    return tuple(row)


def _validate_bitrix(ctx: Ctx, line: int, row: dict) -> tuple:
    try:
        acc = bitrix.map_row(row, region=ctx.settings.default_country,
                             normalize_email=normalize_email, normalize_phone=normalize_phone)
    except B24Error as exc:
        login = row.get("LOGIN")
        return _bad(line, exc.message, login or None, exc.code)
    key = acc.login_key
    unique = ctx.settings.accounts.unique_email
    return (line, (acc.login, key, acc.email, acc.email_key, acc.phone, acc.name or None, acc.last_name or None,
                   acc.lang, acc.password_hash, acc.social, acc.blocked,
                   _keys_of(key, acc.email_key if unique else None, acc.phone, acc.social, acc.external, acc.portal_id,
                            ids.login_skeleton(acc.login)),
                   acc.external, acc.profile_phone, acc.portal_id, acc.phone_from_profile))


def validate_record(ctx: Ctx, layout: Layout, record: tuple) -> tuple:
    """A record -> (line, validated row) or a bad record. None in a field means "not given"."""
    if record[1] is None:
        return record
    line, payload = record
    if layout.fmt == "bitrix":
        return _validate_bitrix(ctx, line, _bitrix_row(payload, layout))
    try:
        v = to_values(layout, payload)
    except ValueError as exc:
        return _bad(line, str(exc), _login_hint(layout, payload))
    try:
        # Email and phone are left to the batch-speed equivalents above.
        acc = accounts.prepare(ctx, v[LOGIN] or "", None, None, v[NAME], v[LAST_NAME], v[LANG],
                               v[SOCIAL] or (), blocked=bool(v[BLOCKED]))
        email, email_key = normalize_email(v[EMAIL]) if v[EMAIL] else (None, None)
        phone = normalize_phone(v[PHONE], ctx.settings.default_country) if v[PHONE] else None
        password_hash = check_hash(v[HASH], "password_hash") if v[HASH] else None
    except B24Error as exc:
        return _bad(line, exc.message, v[LOGIN], exc.code)
    key = ids.login_key(acc.login)
    unique = ctx.settings.accounts.unique_email
    return (line, (acc.login, key, email, email_key, phone,
                   None if v[NAME] is None else acc.name, None if v[LAST_NAME] is None else acc.last_name,
                   acc.lang, password_hash, acc.social, v[BLOCKED],
                   _keys_of(key, email_key if unique else None, phone, acc.social,
                            skeleton=ids.login_skeleton(acc.login)),
                   None, None, None, False))


@functools.lru_cache(maxsize=1)
def _keep_phone_patterns() -> None:
    # phonenumbers recompiles (through re's small cache) its metadata patterns on every parse;
    # keeping them all compiled saves a sixth of the time of a phone number.
    from phonenumbers import re_util

    re_util.enable_pattern_cache()


def validate_batch(ctx: Ctx, layout: Layout, batch: list) -> list:
    _keep_phone_patterns()
    return [validate_record(ctx, layout, r) for r in batch]


def helper_main() -> None:
    """A helper process: validate the batches its parent sends on stdin, answer on stdout.

    Messages are pickles (a trusted parent, over a private pipe). It stops on None, and on EOF
    or a broken pipe: if its parent dies, even by SIGKILL, it exits instead of lingering.
    """
    import pickle
    import sys

    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by accident may corrupt the answers
    try:
        settings, layout = pickle.load(inbox)
        ctx = Ctx(store=None, settings=settings)
        while (batch := pickle.load(inbox)) is not None:
            pickle.dump(validate_batch(ctx, layout, batch), outbox, protocol=pickle.HIGHEST_PROTOCOL)
            outbox.flush()
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return


class Validator:
    """Validates batches in order: in this process at first, in helper processes for long files.

    Each helper has at most one batch in flight and batch k goes to helper k % n, so results
    come back in file order, memory stays bounded, and a send never waits on a helper that is
    itself waiting to send (no deadlock). Helpers are plain `python -c` subprocesses holding
    nothing but their stdin/stdout pipes (no store handle, no re-import of a caller's script).
    """

    def __init__(self, ctx: Ctx, layout: Layout, workers: int | None = None,
                 parallel_after: int = PARALLEL_AFTER):
        self.ctx, self.layout = ctx, layout
        self.workers = min(os.cpu_count() or 1, 4) if workers is None else workers
        self.parallel_after = parallel_after
        self.helpers: list = []
        self.in_flight: deque = deque()

    def _start(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        debug = os.environ.get("B24RECOVER_DEBUG") == "1"
        for _ in range(self.workers):
            helper = subprocess.Popen(
                [sys.executable, "-c", "from b24recover.services.importer import helper_main; helper_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if debug else subprocess.DEVNULL,
                env=env)
            self.helpers.append(helper)
            self._send(helper, (self.ctx.settings, self.layout))

    @staticmethod
    def _send(helper, obj) -> None:
        import pickle

        try:
            pickle.dump(obj, helper.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            helper.stdin.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise RuntimeError("an import helper process stopped unexpectedly") from None

    @staticmethod
    def _receive(helper):
        import pickle

        try:
            return pickle.load(helper.stdout)
        except EOFError:
            raise RuntimeError("an import helper process stopped unexpectedly") from None

    def map(self, batches_in):
        in_flight = self.in_flight
        for number, batch in enumerate(batches_in):
            if not self.helpers and self.workers > 1 and number >= self.parallel_after:
                self._start()
            if not self.helpers:
                yield validate_batch(self.ctx, self.layout, batch)
                continue
            helper = self.helpers[number % len(self.helpers)]
            result = None
            if len(in_flight) == len(self.helpers):
                result = self._receive(in_flight.popleft())
            self._send(helper, batch)
            in_flight.append(helper)
            if result is not None:
                yield result
        while in_flight:
            yield self._receive(in_flight.popleft())

    def close(self) -> None:
        """Stop the helpers: politely when they are idle, at once when work was abandoned."""
        import subprocess

        abandoned = bool(self.in_flight)
        for helper in self.helpers:
            if abandoned:
                helper.kill()
                continue
            try:
                self._send(helper, None)
            except RuntimeError:
                helper.kill()
        for helper in self.helpers:
            try:
                helper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
            helper.stdin.close()
            helper.stdout.close()
        self.helpers = []
        self.in_flight.clear()


# ---- writing ---------------------------------------------------------------------------------
#
# The batch queries (IN (...) lookups, multi-row INSERTs, the TEMP table) are in store/imports.py.

_KEY_WHAT = {"l": "login", "k": "login (or one that looks the same)", "a": "address", "s": "social identity",
             "p": "portal ID"}


class _Rollback(Exception):
    """Raised inside a dry-run batch transaction so that it is rolled back."""


class Writer:
    """Applies validated batches to the store in transactions sized by time.

    A batch is written in parts, each its own `BEGIN IMMEDIATE` transaction sized so that it
    holds the write lock for about PART_SECONDS (services/audit.Pacer, as the purge does), and
    between parts the import steps aside long enough for a waiting writer to get in: a short
    operation (issue, redeem, reset) queued behind several imports waits about a second at most.

    A row repeating an identifier of an earlier row of the same file is a conflict, in every
    mode (update too: two rows for one account are ambiguous). Within a batch the earlier rows
    are in `claimed`. Across batches: the accounts this import added are the id ranges it
    inserted (the write lock is held, so every new id of a transaction is ours); the accounts it
    updated, and in a dry run (whose transactions are rolled back) every identifier, are kept in
    a TEMP table of 64-bit key hashes (store/imports.py): it lives on disk behind a small page
    cache, so millions of rows do not grow this process, and writing it never takes the store's
    write lock.

    --on-conflict update changes profile fields only (name, last name, email, phone, lang, and a
    Bitrix row's profile phone and portal ID); password hashes and new social identities only
    with `update_passwords`, blocked/active only with `update_state`. Each changed account is one
    `user.update` audit event naming the changed fields, never their secret values.
    """

    PROFILE = ("email", "phone", "name", "last_name", "lang", "profile_phone", "portal_id")

    def __init__(self, ctx: Ctx, result: ImportResult, on_conflict: str, source: str, *,
                 update_passwords: bool = False, update_state: bool = False, pacer=None):
        from .audit import Pacer

        self.ctx, self.result, self.mode, self.source = ctx, result, on_conflict, source
        self.update_passwords, self.update_state = update_passwords, update_state
        self.unique_email = ctx.settings.accounts.unique_email
        self.conn = ctx.store.conn
        self.pacer = pacer or Pacer(batch=PART_ROWS, target=PART_SECONDS, min_batch=50, max_batch=BATCH_ROWS,
                                    window=PART_SECONDS)
        self.added_ids: list[tuple[int, int]] = []  # (after, last]: ids added by each transaction
        self._seen_version = import_store.data_version(self.conn)
        self._wrote_meanwhile = False
        self.turn = import_store.ImportTurn(ctx.store)
        import_store.open_seen(self.conn)
        # A larger page cache for the store while importing: index pages of a big table stay
        # in memory instead of being re-read for every batch (measured: a third off each insert).
        self.cache_size = import_store.cache_size(self.conn)
        import_store.set_cache_size(self.conn, -IMPORT_CACHE_KIB)

    def close(self) -> None:
        self.turn.close()
        import_store.close_seen(self.conn)
        import_store.set_cache_size(self.conn, self.cache_size)

    def _counts(self) -> tuple:
        r = self.result
        return (r.read, r.added, r.updated, r.unchanged, r.skipped, r.bad_count)

    def _others_wrote(self) -> bool:
        now = import_store.data_version(self.conn)
        changed, self._seen_version = now != self._seen_version, now
        self._wrote_meanwhile = self._wrote_meanwhile or changed
        return changed

    def write(self, batch: list) -> None:
        import time

        claimed: dict[str, int] = {}   # key -> line, for the rows of this batch
        at = 0
        while at < len(batch):
            size = self.pacer.batch
            self.turn.take()
            began = time.monotonic()
            self._write_part(batch[at:at + size], claimed)
            self.pacer.took(time.monotonic() - began)
            self._seen_version = import_store.data_version(self.conn)
            at += size
            yielded, self._wrote_meanwhile = self.pacer.yielded, False
            self.pacer.after_batch(self._others_wrote)
            if self.pacer.yielded != yielded:
                self.turn.give()  # after the pause: the next import's turn
                # Nobody used the pause: write longer before the next one (up to MAX_WINDOW, so a
                # newcomer still waits about a second at most); someone did: pause sooner again.
                self.pacer.window = (PART_SECONDS if self._wrote_meanwhile
                                     else min(MAX_WINDOW, self.pacer.window * 2))

    def _write_part(self, part: list, claimed: dict) -> None:
        result = self.result
        before = self._counts()
        remember: list[str] = []       # keys to keep for later batches (see the class doc)
        try:
            with self.ctx.store.write() as conn:
                added_ids = self._apply(conn, part, claimed, remember)
                if result.dry_run:
                    raise _Rollback
                _, added, updated, unchanged, skipped, bad = (now - then for now, then in zip(self._counts(), before))
                self.ctx.audit(conn, "user.import", None, source=self.source, format=result.format,
                               on_conflict=self.mode, first_line=part[0][0], last_line=part[-1][0],
                               added=added, updated=updated, unchanged=unchanged, skipped=skipped, bad=bad)
            if added_ids:
                self.added_ids.append(added_ids)
        except _Rollback:
            pass
        except BaseException:
            # Nothing of this part was written: take back its counts before passing the error on.
            (result.read, result.added, result.updated, result.unchanged, result.skipped,
             result.bad_count) = before
            del result.bad[result.bad_count:]
            raise
        if remember:
            import_store.remember_seen(self.conn, ((hash(k), claimed[k]) for k in remember))

    def _apply(self, conn, batch: list, claimed: dict, remember: list) -> tuple[int, int] | None:
        result, dry_run = self.result, self.result.dry_run
        good = [r[1] for r in batch if r[1] is not None]
        hits = self._store_hits(conn, good)
        seen = self._seen(conn, good, hits)
        now = self.ctx.now()
        plain, with_social = [], []
        for record in batch:
            result.read += 1
            line, row = record[0], record[1]
            if row is None:
                result.add_bad(line, record[4], record[2], record[3])
                continue
            while True:
                clash = next((k for k in row[V_KEYS] if k in claimed or hash(k) in seen), None)
                if clash is not None and row[V_SOFT_PHONE] and clash == "a:" + row[V_PHONE]:
                    row = without_soft_phone(row, self.unique_email)  # a shared PERSONAL_PHONE
                    continue
                break
            keys = row[V_KEYS]
            if clash is not None:
                first = claimed.get(clash) or seen[hash(clash)]
                self._conflict(line, row, f"the {_KEY_WHAT[clash[0]]} is also on line {first} of this file")
                continue
            try:
                if not hits.isdisjoint(keys):
                    done, row = self._update_or_check(conn, row, now)
                    keys = row[V_KEYS]
                    if done:
                        claimed.update(dict.fromkeys(keys, line))
                        remember.extend(keys if dry_run else keys[:1])
                        continue
            except B24Error as exc:
                self._conflict(line, row, exc.message, exc.code)
                continue
            (with_social if row[V_SOCIAL] else plain).append(row)
            claimed.update(dict.fromkeys(keys, line))
            if dry_run:
                remember.extend(keys)
            result.added += 1
        return self._insert(conn, plain, with_social, now)

    def _conflict(self, line: int, row: tuple, reason: str, code: str = "conflict") -> None:
        if code == "conflict" and self.mode == "skip":
            self.result.skipped += 1
        else:
            self.result.add_bad(line, row[V_LOGIN], code, reason)

    def _seen(self, conn, good: list, hits: set) -> dict[int, int]:
        """Hash -> line for this batch's keys remembered from earlier batches. Outside a dry run
        only store hits can have been seen, so only they are looked up, and a hash collision
        cannot invent a duplicate."""
        dry_run = self.result.dry_run
        hashes = [hash(k) for row in good for k in row[V_KEYS] if dry_run or k in hits]
        return import_store.seen_lines(conn, hashes)

    def _store_hits(self, conn, good: list) -> set[str]:
        """Keys of this batch already used in the store; only those rows need precise checks."""
        logins = [r[V_KEY] for r in good]
        emails = [r[V_EMAIL_KEY] for r in good if r[V_EMAIL_KEY]] if self.unique_email else []
        phones = [r[V_PHONE] for r in good if r[V_PHONE]]
        socials = [pair for r in good for pair in r[V_SOCIAL]]
        portal_ids = [r[V_PORTAL_ID] for r in good if r[V_PORTAL_ID] is not None]
        used_logins = import_store.keys_in_use(conn, "login_key", logins)
        hits = {r[V_KEYS][0] for r in good if r[V_KEY] in used_logins}  # a login in use, any external id
        used_skeletons = import_store.keys_in_use(conn, "login_skeleton", [_skeleton(r) for r in good])
        hits.update(r[V_KEYS][1] for r in good if _skeleton(r) in used_skeletons)  # checked precisely later
        hits.update("a:" + k for k in import_store.keys_in_use(conn, "email_key", emails))
        hits.update("a:" + k for k in import_store.keys_in_use(conn, "phone", phones))
        hits.update("a:" + k for k in import_store.keys_in_use(conn, "address_key", emails + phones))
        hits.update(f"s:{p}:{s}" for p, s in import_store.socials_in_use(conn, socials))
        hits.update(f"p:{k}" for k in import_store.keys_in_use(conn, "portal_id", portal_ids))
        return hits

    def _added_here(self, user_id: int) -> bool:
        at = bisect.bisect_left(self.added_ids, (user_id,)) - 1
        return at >= 0 and self.added_ids[at][0] < user_id <= self.added_ids[at][1]

    def _check_free(self, conn, row: tuple, owner_id: int | None, with_login: bool) -> tuple:
        """accounts.check_free for a row; a shared PERSONAL_PHONE is dropped, not a conflict.
        Returns the row (maybe without its sign-in phone)."""
        if row[V_SOFT_PHONE]:
            holders = (user_store.by_phone(conn, row[V_PHONE]), user_store.pending_owner(conn, row[V_PHONE]))
            if any(h is not None and h["id"] != owner_id for h in holders):
                row = without_soft_phone(row, self.unique_email)
        accounts.check_free(conn, login_key=row[V_KEY] if with_login else None, external=row[V_EXTERNAL],
                            email_key=row[V_EMAIL_KEY], phone=row[V_PHONE], owner_id=owner_id,
                            skeleton=_skeleton(row) if with_login else None,
                            unique_email=self.unique_email, portal_id=row[V_PORTAL_ID])
        return row

    def _update_or_check(self, conn, row: tuple, now: int) -> tuple[bool, tuple]:
        """A row touching identifiers in use: update its account (True), or raise the conflict."""
        existing = user_store.by_login(conn, row[V_KEY], row[V_EXTERNAL])
        if existing is not None and self.mode == "update" and not self._added_here(existing["id"]):
            row = self._update(conn, existing, row, now)
            return True, row
        try:
            row = self._check_free(conn, row, owner_id=None, with_login=True)
            self._check_socials(conn, row, owner_id=None)
        except B24Error as exc:
            owner = user_store.by_login_key(conn, ids.login_key(exc.details.get("owner") or ""))
            if owner is not None and self._added_here(owner["id"]):
                exc.message += ", added from an earlier row of this file"
            raise
        return False, row

    @staticmethod
    def _check_socials(conn, row: tuple, owner_id: int | None) -> list:
        """The row's social identities not yet attached to owner_id; raise if another has one."""
        new = []
        for provider, subject in row[V_SOCIAL]:
            owner = user_store.social_owner(conn, provider, subject)
            if owner is None:
                new.append((provider, subject))
            elif owner["id"] != owner_id:
                raise B24Error("conflict", f"{provider}:{subject} already belongs to the account {owner['login']!r}",
                               owner=owner["login"])
        return new

    def _update(self, conn, existing, row: tuple, now: int) -> tuple:
        """--on-conflict update: the row's given profile fields replace the stored ones; the
        password hash and social identities with update_passwords, the state with update_state."""
        row = self._check_free(conn, row, owner_id=existing["id"], with_login=False)
        new_socials = self._check_socials(conn, row, owner_id=existing["id"]) if self.update_passwords else []
        given = {"email": row[V_EMAIL], "email_key": row[V_EMAIL_KEY], "phone": row[V_PHONE], "name": row[V_NAME],
                 "last_name": row[V_LAST], "lang": row[V_LANG], "profile_phone": row[V_PROFILE_PHONE],
                 "portal_id": row[V_PORTAL_ID]}
        if self.update_passwords:
            given["password_hash"] = row[V_HASH]
        if self.update_state:
            given["blocked"] = None if row[V_BLOCKED] is None else int(row[V_BLOCKED])
        changes = {k: v for k, v in given.items() if v is not None and existing[k] != v}
        if not changes and not new_socials:
            self.result.unchanged += 1
            return row
        fields = sorted(k for k in changes if k != "email_key")
        if "password_hash" in changes:
            changes["password_changed_at"] = now
            changes["must_change_password"] = 0
        changes["updated_at"] = now
        user_store.update(conn, existing["id"], changes)
        for provider, subject in new_socials:
            user_store.add_social(conn, existing["id"], provider, subject, now)
        revoked = accounts.revoke_on_change(conn, existing["id"], changes, now)
        if "password_hash" in changes:
            # The imported hash is a new password: the account starts a fresh history and
            # failure count (Bitrix does the same on a password change).
            user_store.update(conn, existing["id"], {"failed_attempts": 0})
        self.ctx.audit(conn, "user.update", existing["login"], source="import", file=self.source,
                       fields=fields + (["social"] if new_socials else []), revoked=revoked)
        self.result.updated += 1
        return row

    @staticmethod
    def _insert(conn, plain: list, with_social: list, now: int) -> tuple[int, int] | None:
        """Insert the new accounts; return the range (after, last] of their ids."""
        def columns(r):  # in import_store.INSERT_COLUMNS order
            return (r[V_LOGIN], r[V_KEY], r[V_EMAIL], r[V_EMAIL_KEY], r[V_PHONE], r[V_NAME] or "",
                    r[V_LAST] or "", r[V_LANG], int(bool(r[V_BLOCKED])), r[V_HASH], now, now,
                    now if r[V_HASH] else None, r[V_EXTERNAL], r[V_PROFILE_PHONE], r[V_PORTAL_ID], _skeleton(r))

        if not plain and not with_social:
            return None
        after = user_store.max_id(conn)
        if plain:
            import_store.insert_many(conn, [columns(r) for r in plain], returning=False)
        if with_social:
            ids_by_key = import_store.insert_many(conn, [columns(r) for r in with_social], returning=True)
            for r in with_social:
                for provider, subject in r[V_SOCIAL]:
                    user_store.add_social(conn, ids_by_key[(r[V_KEY], r[V_EXTERNAL])], provider, subject, now)
        return after, user_store.max_id(conn)


# ---- the whole import --------------------------------------------------------------------------

def _file_size(stream) -> int:
    try:
        return os.fstat(stream.fileno()).st_size  # 0 for a pipe
    except (AttributeError, OSError, ValueError):
        return 0


def run_import(ctx: Ctx, stream, *, name: str = "-", fmt: str | None = None, on_conflict: str = "fail",
               dry_run: bool = False, progress=None, workers: int | None = None,
               parallel_after: int | None = None, update_passwords: bool = False, update_state: bool = False,
               encoding: str | None = None, columns: list[str] | None = None, pacer=None,
               on_bad=None) -> ImportResult:
    """Import accounts from a binary stream. `progress(bytes_read)` is called after each batch,
    `on_bad(row)` with each bad row as it is found.

    Raises B24Error for file-level problems (unknown format, bad header) before anything is
    written; bad rows are in the result, never raised.
    """
    if fmt is not None and fmt not in FORMATS:
        raise B24Error("usage", f"--format must be one of {', '.join(FORMATS)}")
    if on_conflict not in CONFLICT_MODES:
        raise B24Error("usage", f"--on-conflict must be one of {', '.join(CONFLICT_MODES)}")
    if encoding is not None and encoding.lower() not in ENCODINGS:
        raise B24Error("usage", "--encoding must be utf-8 or windows-1251")
    lines = Lines(stream, ENCODINGS[(encoding or "utf-8").lower()])
    check_first_line(lines.peek(), lines.encoding, header=columns is None)
    if fmt is None and columns is not None:
        fmt = "bitrix" if {"LOGIN", "EXTERNAL_AUTH_ID"} <= set(bitrix.names(columns)) else "csv"
    fmt = fmt or detect_format(name, lines.peek(), lines.encoding)
    layout, rows = records(lines, fmt, columns)  # a bad header fails here, before any write
    result = ImportResult(format=fmt, dry_run=dry_run, on_bad=on_bad)
    if parallel_after is None:
        # A long file: helpers start at once, their start-up overlapping the first batches.
        parallel_after = 0 if _file_size(stream) >= PARALLEL_AT_ONCE else PARALLEL_AFTER
    validator = Validator(ctx, layout, workers, parallel_after)
    writer = Writer(ctx, result, on_conflict, name, update_passwords=update_passwords, update_state=update_state,
                    pacer=pacer)
    try:
        for batch in validator.map(batches(rows)):
            writer.write(batch)
            if progress is not None:
                progress(lines.bytes_read)
    finally:
        validator.close()
        writer.close()
    return result
