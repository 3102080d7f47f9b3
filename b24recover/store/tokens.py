"""Control strings: rows, state changes and the stale-row queries of `audit tokens`."""

from __future__ import annotations


def active(conn, user_id: int):
    return conn.execute(
        "SELECT * FROM control_strings WHERE user_id = ? AND state = 'active'", (user_id,)
    ).fetchone()


def revoke_active(conn, user_id: int, now: int, reason: str) -> int:
    """Revoke the account's active control string, if any. Returns how many were revoked."""
    cur = conn.execute(
        "UPDATE control_strings SET state = 'revoked', end_reason = ?, ended_at = ?"
        " WHERE user_id = ? AND state = 'active'",
        (reason, now, user_id),
    )
    conn.execute(
        "UPDATE outbox SET status = 'cancelled', sealed = NULL, error = 'control string revoked before delivery'"
        " WHERE user_id = ? AND status IN ('queued', 'failed') AND sealed IS NOT NULL",
        (user_id,),
    )
    return cur.rowcount
