"""The transactional outbox: messages are written with the control string they carry."""

from __future__ import annotations

import json

from . import leases
from .leases import CLAIMABLE  # noqa: F401  (re-exported: the outbox's claimable statuses)


def insert(conn, *, user_id: int | None, token_id: int | None, channel: str, template: str, lang: str,
           recipient: str, params: dict, sealed: str | None, now: int) -> int:
    cur = conn.execute(
        "INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient, params, sealed, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (user_id, token_id, channel, template, lang, recipient, json.dumps(params, ensure_ascii=False), sealed, now),
    )
    return cur.fetchone()[0]


def by_id(conn, message_id: int):
    return conn.execute("SELECT * FROM outbox WHERE id = ?", (message_id,)).fetchone()


def claim(conn, message_id: int, *, owner: str, now: int, lease: int, host: str) -> bool:
    """Take the message for one sender: 'sending', leased to `owner` until now + lease.

    Exclusive: a message another sender holds is not taken until its lease has ended (that sender
    crashed or overran). The Message-ID is fixed by the first claim, from the row id and the
    store's identity (64 random bits are plenty and keep the header on one line), so every retry
    of the message carries the same one.
    """
    return leases.claim(
        conn, "outbox", message_id, owner=owner, now=now, lease=lease, params={"host": host},
        also_set="message_id = coalesce(message_id, 'b24recover.' || id || '.'"
                 " || (SELECT substr(uid, 1, 16) FROM store_identity WHERE id = 1) || '@' || :host)")


def mark_sent(conn, message_id: int, owner: str, now: int) -> bool:
    """Record the delivery; only the claimant may (False: it lost the message to another sender)."""
    return leases.finish(conn, "outbox", message_id, owner, "sent", sent_at=now, error=None, sealed=None)


def mark_failed(conn, message_id: int, owner: str, error: str) -> bool:
    """Record a failed attempt for a later retry; only the claimant may."""
    return leases.finish(conn, "outbox", message_id, owner, "failed", error=error[:500])


def cancel(conn, message_id: int, owner: str, reason: str) -> bool:
    """Cancel a claimed message whose control string ended before it went out; only the claimant may."""
    return leases.finish(conn, "outbox", message_id, owner, "cancelled", sealed=None, error=reason)


def pending_ids(conn, now: int) -> list[int]:
    """Messages a sender could claim now (queued, failed, or sending with an ended lease)."""
    return leases.claimable_ids(conn, "outbox", now)


def listing(conn, status: str | None, limit: int):
    if status:
        return conn.execute("SELECT * FROM outbox WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)).fetchall()
    return conn.execute("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall()


def recent_for_user(conn, user_id: int, limit: int):
    """The account's newest messages, newest first."""
    return conn.execute("SELECT * FROM outbox WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)).fetchall()


def last_for_user(conn, user_id: int):
    rows = recent_for_user(conn, user_id, 1)
    return rows[0] if rows else None
