"""Helpers for tests that need the secret a person would receive."""

from __future__ import annotations

import mailbox
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LINK = re.compile(r"https?://\S+USER_CHECKWORD=\S+")


def beside_store(db_path: Path, suffix: str) -> Path:
    """The store's local file with this suffix (".key", ".outbox"): after the SQLite file, or for
    a PostgreSQL URL after its `local_base` (see conftest.PgTestURL)."""
    return Path(getattr(db_path, "local_base", str(db_path)) + suffix)


def outbox_dir(db_path: Path) -> Path:
    return beside_store(db_path, ".outbox")


_OUTBOX_ID = re.compile(r"<b24recover\.(\d+)\.")
_NAME_TIME = re.compile(r"^\.?(\d+)\.M(\d+)P(\d+)Q(\d+)")


def outbox_id(msg) -> int:
    """The outbox row a mail came from, from its Message-ID (b24recover.<id>.<created>@host)."""
    return int(_OUTBOX_ID.match(msg["Message-ID"]).group(1))


def mails(db_path: Path) -> list:
    """Every mail in the Maildir outbox, oldest first (by outbox row: ids only grow)."""
    box = mailbox.Maildir(outbox_dir(db_path) / "mail", create=False)
    return sorted(box, key=outbox_id)


def _newest_file(folder: Path) -> Path:
    """The newest outbox file by the (seconds, microseconds) in its unique name; two files of the
    same microsecond would be ambiguous, and say so instead of one being picked at random."""
    def when(path: Path) -> tuple[int, int]:
        seconds, usec, _pid, _n = _NAME_TIME.match(path.name).groups()
        return int(seconds), int(usec)

    files = sorted(folder.glob("*.txt"), key=when)
    assert len(files) < 2 or when(files[-1]) != when(files[-2]), f"two newest files tie: {files[-2:]}"
    return files[-1]


def body_of(msg) -> str:
    part = msg.get_payload(decode=True) if not msg.is_multipart() else msg.get_payload(0).get_payload(decode=True)
    return part.decode(msg.get_content_charset() or "utf-8")


def last_link(db_path: Path) -> str:
    newest = max(mails(db_path), key=outbox_id)
    return LINK.search(body_of(newest)).group(0)


def link_parts(link: str) -> tuple[str, str]:
    """(login, control string) carried by a recovery link."""
    q = parse_qs(urlsplit(link).query)
    return q["USER_LOGIN"][0], q["USER_CHECKWORD"][0]


def last_sms(db_path: Path) -> tuple[str, str]:
    newest = _newest_file(outbox_dir(db_path) / "sms")
    return sms_parts(newest.read_text(encoding="utf-8"))[:2]


def sms_parts(content: str) -> tuple[str, str, dict]:
    """(number, text, headers) of an SMS outbox file: header lines (To: first), a blank line, the text."""
    head, _, text = content.partition("\n\n")
    lines = head.split("\n")
    assert lines[0].startswith("To: "), content
    headers = dict(line.split(": ", 1) for line in lines)
    return headers["To"], text, headers


def last_code(db_path: Path) -> str:
    return re.search(r"\b(\d{6})\b", last_sms(db_path)[1]).group(1)


def wait_until(predicate, what: str) -> None:
    """Wait for what a detached process does after the command exited (token request)."""
    deadline = time.monotonic() + 60  # a safety net against hanging, not a timing assertion
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
