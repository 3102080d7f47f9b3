"""Wrong control strings and codes, per subject (an account, or a typed login that matches none)."""

from __future__ import annotations


def record(conn, subject: str, now: int, code_shaped: bool, code_id: int, window: int) -> None:
    """Count one wrong try; rows that left the window are of no use to anyone and go."""
    conn.execute("DELETE FROM recovery_failures WHERE at <= ?", (now - window,))
    conn.execute("INSERT INTO recovery_failures (subject, at, code_shaped, code_id) VALUES (?, ?, ?, ?)",
                 (subject, now, int(code_shaped), code_id))


def count_since(conn, subject: str, since: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM recovery_failures WHERE subject = ? AND at > ?", (subject, since)
    ).fetchone()[0]


def wrong_codes_since(conn, subject: str, since: int, code_id: int) -> int:
    """Wrong 6-digit codes tried while `code_id` was the subject's newest code."""
    return conn.execute(
        "SELECT count(*) FROM recovery_failures WHERE subject = ? AND at > ? AND code_shaped = 1 AND code_id = ?",
        (subject, since, code_id),
    ).fetchone()[0]


def nth_oldest_since(conn, subject: str, since: int, n: int) -> int | None:
    """When the n-th oldest (0-based) wrong try still in the window was made."""
    row = conn.execute(
        "SELECT at FROM recovery_failures WHERE subject = ? AND at > ? ORDER BY at, id LIMIT 1 OFFSET ?",
        (subject, since, n),
    ).fetchone()
    return None if row is None else row[0]


def reset(conn, subject: str) -> int:
    return conn.execute("DELETE FROM recovery_failures WHERE subject = ?", (subject,)).rowcount


def newest_code_id(conn, user_id: int) -> int:
    """The account's newest SMS code (0: none): a new code starts its own count of tries."""
    return conn.execute(
        "SELECT coalesce(max(id), 0) FROM control_strings WHERE user_id = ? AND kind = 'code'", (user_id,)
    ).fetchone()[0]
