"""The transactional outbox: messages are written with the control string they carry."""

from __future__ import annotations

import json

RETRY_AFTER = 60  # a message being sent by another process is left alone this long


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


def claim(conn, message_id: int, now: int) -> bool:
    """Mark an attempt; a message another process is sending right now is not taken twice."""
    cur = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?"
        " WHERE id = ? AND status IN ('queued', 'failed')"
        " AND (last_attempt_at IS NULL OR last_attempt_at <= ? OR status = 'failed')",
        (now, message_id, now - RETRY_AFTER),
    )
    return cur.rowcount == 1


def mark_sent(conn, message_id: int, now: int) -> None:
    conn.execute("UPDATE outbox SET status = 'sent', sent_at = ?, error = NULL, sealed = NULL WHERE id = ?",
                 (now, message_id))


def mark_failed(conn, message_id: int, error: str) -> None:
    conn.execute("UPDATE outbox SET status = 'failed', error = ? WHERE id = ?", (error[:500], message_id))


def cancel(conn, message_id: int, reason: str) -> None:
    conn.execute("UPDATE outbox SET status = 'cancelled', sealed = NULL, error = ? WHERE id = ?", (reason, message_id))


def pending_ids(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM outbox WHERE status IN ('queued', 'failed') ORDER BY id")]


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
