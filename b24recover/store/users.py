"""Accounts, their social identities and pending addresses."""

from __future__ import annotations

import re

USER_COLUMNS = (
    "login", "login_key", "email", "email_key", "phone", "name", "last_name", "lang", "blocked",
    "password_hash", "must_change_password", "created_at", "updated_at", "password_changed_at",
)


def insert(conn, row: dict) -> int:
    cols = [c for c in USER_COLUMNS if c in row]
    cur = conn.execute(
        f"INSERT INTO users ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) RETURNING id",
        [row[c] for c in cols],
    )
    return cur.fetchone()[0]


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
    return conn.execute("SELECT * FROM users WHERE login_key = ?", (key,)).fetchone()


def by_email_key(conn, key: str):
    return conn.execute("SELECT * FROM users WHERE email_key = ?", (key,)).fetchone()


def by_phone(conn, e164: str):
    return conn.execute("SELECT * FROM users WHERE phone = ?", (e164,)).fetchone()


# What splits words, the same on both engines: FTS5's unicode61 and the expression of the
# PostgreSQL index users_names (store/schema.py) both cut at punctuation and spaces.
_WORD = r"[^\W_]+"  # compiled on first use (re caches it), not at every start


def by_name(conn, text: str, limit: int = 50):
    """Accounts where every word of `text` starts a word of login, name or last name, ignoring
    case and diacritics; best matches first. The words are the only input put into the search
    syntax, quoted, so nothing in `text` acts as FTS syntax."""
    words = re.findall(_WORD, text)[:8]
    if not words:
        return []
    if getattr(conn, "engine", "sqlite") == "postgresql":
        return conn.execute(
            "SELECT users.* FROM users, to_tsquery('b24recover_names', ?) AS q"
            " WHERE to_tsvector('b24recover_names', regexp_replace(login || ' ' || name || ' ' || last_name,"
            " '[[:punct:][:space:]]+', ' ', 'g')) @@ q ORDER BY ts_rank(to_tsvector('b24recover_names',"
            " regexp_replace(login || ' ' || name || ' ' || last_name, '[[:punct:][:space:]]+', ' ', 'g')), q) DESC,"
            " users.id LIMIT ?",
            (" & ".join(w + ":*" for w in words), limit),
        ).fetchall()
    return conn.execute(
        "SELECT users.* FROM users_fts JOIN users ON users.id = users_fts.rowid"
        " WHERE users_fts MATCH ? ORDER BY rank LIMIT ?",
        (" AND ".join('"' + w + '"*' for w in words), limit),
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
        "INSERT INTO pending_addresses (user_id, channel, address, address_key, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET channel = excluded.channel,"
        " address = excluded.address, address_key = excluded.address_key, created_at = excluded.created_at",
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
