"""Helpers for tests that need the secret a person would receive."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LINK = re.compile(r"https?://\S+USER_CHECKWORD=\S+")


def outbox_dir(db_path: Path) -> Path:
    return Path(getattr(db_path, "local_base", str(db_path)) + ".outbox")  # a PostgreSQL URL: see conftest


def mails(db_path: Path) -> list:
    box = mailbox.Maildir(outbox_dir(db_path) / "mail", create=False)
    return sorted(box, key=lambda m: m["Date"] and m.get("Message-ID"))


def body_of(msg) -> str:
    part = msg.get_payload(decode=True) if not msg.is_multipart() else msg.get_payload(0).get_payload(decode=True)
    return part.decode(msg.get_content_charset() or "utf-8")


def last_link(db_path: Path) -> str:
    newest = sorted((outbox_dir(db_path) / "mail" / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)[-1]
    msg = mailbox.MaildirMessage(newest.read_bytes())
    return LINK.search(body_of(msg)).group(0)


def link_parts(link: str) -> tuple[str, str]:
    """(login, control string) carried by a recovery link."""
    q = parse_qs(urlsplit(link).query)
    return q["USER_LOGIN"][0], q["USER_CHECKWORD"][0]


def last_sms(db_path: Path) -> tuple[str, str]:
    newest = sorted((outbox_dir(db_path) / "sms").iterdir(), key=lambda p: p.stat().st_mtime_ns)[-1]
    head, _, text = newest.read_text(encoding="utf-8").partition("\n\n")
    return head.removeprefix("To: ").strip(), text


def last_code(db_path: Path) -> str:
    return re.search(r"\b(\d{6})\b", last_sms(db_path)[1]).group(1)
