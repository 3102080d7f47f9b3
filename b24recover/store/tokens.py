"""Control strings: rows, state changes and the stale-row queries of `audit tokens`."""

from __future__ import annotations


def active(conn, user_id: int):
    return conn.execute(
        "SELECT * FROM control_strings WHERE user_id = ? AND state = 'active'", (user_id,)
    ).fetchone()


def _end_active(conn, user_id: int, now: int, state: str, reason: str, message_note: str) -> int:
    """End the account's active control string; its undelivered message would carry a dead secret,
    so it is cancelled (and its seal erased); an address awaiting confirmation by it can no
    longer be confirmed, so it is no longer pending. Returns how many control strings ended.

    A message being sent right now ('sending') is left to its claimant, which alone may record
    the result: it was already on its way (cancelling it here would not stop it, and would let a
    second sender repeat it). If that attempt fails, the claimant sees the control string ended
    and cancels the message instead of leaving it to retry."""
    ending = active(conn, user_id)
    cur = conn.execute(
        "UPDATE control_strings SET state = ?, end_reason = ?, ended_at = ? WHERE user_id = ? AND state = 'active'",
        (state, reason, now, user_id),
    )
    conn.execute(
        "UPDATE outbox SET status = 'cancelled', sealed = NULL, error = ?"
        " WHERE user_id = ? AND status IN ('queued', 'failed') AND sealed IS NOT NULL",
        (message_note, user_id),
    )
    if ending is not None and ending["purpose"] == "link":
        conn.execute("DELETE FROM pending_addresses WHERE user_id = ? AND address = ?", (user_id, ending["address"]))
    return cur.rowcount


def revoke_active(conn, user_id: int, now: int, reason: str) -> int:
    """Revoke the account's active control string, if any."""
    return _end_active(conn, user_id, now, "revoked", reason, "control string revoked before delivery")


def insert(conn, *, user_id: int, kind: str, channel: str, purpose: str, address: str | None,
           secret_hash: str, now: int, expires_at: int) -> int:
    cur = conn.execute(
        "INSERT INTO control_strings (user_id, kind, channel, purpose, address, secret_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (user_id, kind, channel, purpose, address, secret_hash, now, expires_at),
    )
    return cur.fetchone()[0]


def supersede_active(conn, user_id: int, now: int) -> int:
    """Bitrix overwrites the old checkword: the previous control string stops working."""
    return _end_active(conn, user_id, now, "superseded", "newer_request",
                       "superseded by a newer request before delivery")


def supersede_by_portal(conn, token_id: int, now: int) -> int:
    """The portal wrote its own, newer checkword: this control string no longer opens it."""
    row = conn.execute("SELECT user_id FROM control_strings WHERE id = ? AND state = 'active'", (token_id,)).fetchone()
    if row is None:
        return 0
    return _end_active(conn, row[0], now, "superseded", "portal_newer",
                       "superseded by the portal's own message before delivery")


def by_id(conn, token_id: int):
    return conn.execute("SELECT * FROM control_strings WHERE id = ?", (token_id,)).fetchone()


def recent(conn, user_id: int, limit: int):
    """The account's newest control strings, newest first."""
    return conn.execute(
        "SELECT * FROM control_strings WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
    ).fetchall()


def latest(conn, user_id: int):
    rows = recent(conn, user_id, 1)
    return rows[0] if rows else None


def matching(conn, user_id: int, secret_hash: str):
    return conn.execute(
        "SELECT * FROM control_strings WHERE user_id = ? AND secret_hash = ? ORDER BY id DESC LIMIT 1",
        (user_id, secret_hash),
    ).fetchone()


def count_since(conn, user_id: int, since: int) -> tuple[int, int | None]:
    """How many control strings the account got since `since`, and when the oldest of them was."""
    row = conn.execute(
        "SELECT count(*), min(created_at) FROM control_strings WHERE user_id = ? AND created_at > ?",
        (user_id, since),
    ).fetchone()
    return row[0], row[1]


def last_created(conn, user_id: int) -> int | None:
    return conn.execute("SELECT max(created_at) FROM control_strings WHERE user_id = ?", (user_id,)).fetchone()[0]


def consume(conn, token_id: int, now: int) -> bool:
    """The one atomic conditional update that uses a control string: at most one caller wins."""
    cur = conn.execute(
        "UPDATE control_strings SET state = 'used', end_reason = 'redeemed', ended_at = ?"
        " WHERE id = ? AND state = 'active' AND expires_at >= ?",
        (now, token_id, now),
    )
    return cur.rowcount == 1


def count_wrong_try(conn, token_id: int, limit: int, now: int) -> bool:
    """Count a wrong code against the active code; returns True when that killed it."""
    conn.execute("UPDATE control_strings SET attempts = attempts + 1 WHERE id = ? AND state = 'active'", (token_id,))
    cur = conn.execute(
        "UPDATE control_strings SET state = 'revoked', end_reason = 'too_many_attempts', ended_at = ?"
        " WHERE id = ? AND state = 'active' AND attempts >= ?",
        (now, token_id, limit),
    )
    return cur.rowcount == 1


def for_user(conn, user_id: int | None, states: tuple[str, ...] | None, now: int, limit: int):
    where, params = [], []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    if states is not None:
        clauses = []
        for state in states:
            if state == "expired":
                clauses.append("(state = 'active' AND expires_at < ?)")
                params.append(now)
            elif state == "active":
                clauses.append("(state = 'active' AND expires_at >= ?)")
                params.append(now)
            else:
                clauses.append("state = ?")
                params.append(state)
        where.append("(" + " OR ".join(clauses) + ")")
    sql = "SELECT control_strings.*, users.login AS login FROM control_strings JOIN users ON users.id = control_strings.user_id"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY control_strings.id DESC LIMIT ?"
    params.append(limit)
    return conn.execute(sql, params).fetchall()
