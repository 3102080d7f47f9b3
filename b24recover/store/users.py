"""Accounts, their social identities and pending addresses."""

from __future__ import annotations

USER_COLUMNS = (
    "login", "login_key", "email", "email_key", "phone", "name", "last_name", "lang", "blocked",
    "password_hash", "must_change_password", "created_at", "updated_at", "password_changed_at",
    "portal_id", "external", "profile_phone", "portal_synced_at", "portal_gone",
)


def insert(conn, row: dict) -> int:
    cols = [c for c in USER_COLUMNS if c in row]
    cur = conn.execute(
        f"INSERT INTO users ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [row[c] for c in cols],
    )
    return cur.lastrowid


def update(conn, user_id: int, changes: dict) -> None:
    if not changes:
        return
    assignments = ", ".join(f"{c} = ?" for c in changes)
    conn.execute(f"UPDATE users SET {assignments} WHERE id = ?", [*changes.values(), user_id])


def count_failed_attempt(conn, user_id: int) -> None:
    conn.execute("UPDATE users SET failed_attempts = failed_attempts + 1 WHERE id = ?", (user_id,))


def max_id(conn) -> int:
    """The highest account id, 0 for an empty table: ids above it are inserted after this call."""
    return conn.execute("SELECT coalesce(max(id), 0) FROM users").fetchone()[0]


def by_id(conn, user_id: int):
    return conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()


def by_login_key(conn, key: str):
    """The account a typed login names. Logins are unique per (login, external id), as in
    Bitrix: when an internal account and external ones share a login, the internal one is
    meant (it is the one that signs in with a password); else the oldest external one."""
    return conn.execute("SELECT * FROM users WHERE login_key = ? ORDER BY external IS NOT NULL, id LIMIT 1",
                        (key,)).fetchone()


def by_login(conn, key: str, external: str | None):
    """The account with exactly this (login, external id): the uniqueness key."""
    return conn.execute("SELECT * FROM users WHERE login_key = ? AND ifnull(external, '') = ifnull(?, '')",
                        (key, external)).fetchone()


def by_email_key(conn, key: str):
    return conn.execute("SELECT * FROM users WHERE email_key = ? ORDER BY id LIMIT 1", (key,)).fetchone()


def all_by_email_key(conn, key: str, limit: int = 1000):
    """Every account with this email (several when `[accounts] unique_email = false`)."""
    return conn.execute("SELECT * FROM users WHERE email_key = ? ORDER BY id LIMIT ?", (key, limit)).fetchall()


def by_portal_id(conn, portal_id: int):
    return conn.execute("SELECT * FROM users WHERE portal_id = ?", (portal_id,)).fetchone()


def by_phone(conn, e164: str):
    return conn.execute("SELECT * FROM users WHERE phone = ?", (e164,)).fetchone()


def by_name(conn, fts_query: str, limit: int = 50):
    return conn.execute(
        "SELECT users.* FROM users_fts JOIN users ON users.id = users_fts.rowid"
        " WHERE users_fts MATCH ? ORDER BY rank LIMIT ?",
        (fts_query, limit),
    ).fetchall()


def listing(conn, *, social_only: bool, blocked: bool, must_change: bool, limit: int | None = None):
    where = []
    if social_only:
        where.append("password_hash IS NULL AND EXISTS (SELECT 1 FROM social_identities s WHERE s.user_id = users.id)")
    if blocked:
        where.append("blocked = 1")
    if must_change:
        where.append("must_change_password = 1")
    sql = "SELECT * FROM users"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY login_key"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return conn.execute(sql)


def socials(conn, user_id: int):
    return conn.execute(
        "SELECT provider, subject, created_at FROM social_identities WHERE user_id = ? ORDER BY provider, subject",
        (user_id,),
    ).fetchall()


def social_owner(conn, provider: str, subject: str):
    return conn.execute(
        "SELECT users.* FROM social_identities JOIN users ON users.id = social_identities.user_id"
        " WHERE provider = ? AND subject = ?",
        (provider, subject),
    ).fetchone()


def add_social(conn, user_id: int, provider: str, subject: str, now: int) -> None:
    conn.execute(
        "INSERT INTO social_identities (user_id, provider, subject, created_at) VALUES (?, ?, ?, ?)",
        (user_id, provider, subject, now),
    )


def pending(conn, user_id: int):
    return conn.execute("SELECT * FROM pending_addresses WHERE user_id = ?", (user_id,)).fetchone()


def set_pending(conn, user_id: int, channel: str, address: str, address_key: str, now: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO pending_addresses (user_id, channel, address, address_key, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, channel, address, address_key, now),
    )


def clear_pending(conn, user_id: int) -> None:
    conn.execute("DELETE FROM pending_addresses WHERE user_id = ?", (user_id,))


def pending_owner(conn, address_key: str):
    return conn.execute(
        "SELECT users.* FROM pending_addresses JOIN users ON users.id = pending_addresses.user_id"
        " WHERE address_key = ?",
        (address_key,),
    ).fetchone()


def add_history(conn, user_id: int, digest: str, now: int, keep: int) -> None:
    conn.execute(
        "INSERT INTO password_history (user_id, digest, created_at) VALUES (?, ?, ?)",
        (user_id, digest, now),
    )
    conn.execute(
        "DELETE FROM password_history WHERE user_id = ? AND id NOT IN"
        " (SELECT id FROM password_history WHERE user_id = ? ORDER BY id DESC LIMIT ?)",
        (user_id, user_id, max(keep, 1)),
    )


def history(conn, user_id: int, limit: int):
    return [
        r[0]
        for r in conn.execute(
            "SELECT digest FROM password_history WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit),
        )
    ]
