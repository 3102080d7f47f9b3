"""Accounts, their social identities and pending addresses."""

from __future__ import annotations

import re

USER_COLUMNS = (
    "login", "login_key", "login_skeleton", "email", "email_key", "phone", "name", "last_name", "lang", "blocked",
    "password_hash", "must_change_password", "created_at", "updated_at", "password_changed_at",
    "portal_id", "external", "profile_phone", "portal_synced_at", "portal_gone",
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
    """The account a typed login names. Logins are unique per (login, external id), as in
    Bitrix: when an internal account and external ones share a login, the internal one is
    meant (it is the one that signs in with a password); else the oldest external one."""
    return conn.execute("SELECT * FROM users WHERE login_key = ? ORDER BY external IS NOT NULL, id LIMIT 1",
                        (key,)).fetchone()


def by_login(conn, key: str, external: str | None):
    """The account with exactly this (login, external id): the uniqueness key."""
    return conn.execute("SELECT * FROM users WHERE login_key = ? AND coalesce(external, '') = coalesce(?, '')",
                        (key, external)).fetchone()


def by_login_skeleton(conn, skeleton: str, exclude_id: int | None = None, external: str | None = None):
    """An account other than exclude_id whose login looks like this one (TR39 skeleton), within
    the same directory (SPEC §4: logins are unique per login and external id)."""
    return conn.execute(
        # id <> coalesce(..., 0), not `IS NOT :exclude`, which PostgreSQL accepts only before NULL
        "SELECT * FROM users WHERE login_skeleton = :skeleton AND id <> coalesce(:exclude, 0)"
        " AND coalesce(external, '') = coalesce(:external, '') ORDER BY id LIMIT 1",
        {"skeleton": skeleton, "exclude": exclude_id, "external": external},
    ).fetchone()


def missing_skeletons(conn, limit: int):
    """Accounts stored before logins had a skeleton (`init` fills them in)."""
    return conn.execute("SELECT id, login FROM users WHERE login_skeleton IS NULL LIMIT ?", (limit,)).fetchall()


def by_email_key(conn, key: str):
    return conn.execute("SELECT * FROM users WHERE email_key = ? ORDER BY id LIMIT 1", (key,)).fetchone()


def all_by_email_key(conn, key: str, limit: int = 1000):
    """Every account with this email (several when `[accounts] unique_email = false`)."""
    return conn.execute("SELECT * FROM users WHERE email_key = ? ORDER BY id LIMIT ?", (key, limit)).fetchall()


def by_portal_id(conn, portal_id: int):
    return conn.execute("SELECT * FROM users WHERE portal_id = ?", (portal_id,)).fetchone()


def by_phone(conn, e164: str):
    return conn.execute("SELECT * FROM users WHERE phone = ?", (e164,)).fetchone()


# What splits words, the same on both engines: FTS5's unicode61 and the expression of the
# PostgreSQL index users_names (store/schema.py) both cut at punctuation and spaces.
_WORD = r"[^\W_]+"  # compiled on first use (re caches it), not at every start


def by_name(conn, text: str, limit: int | None = 50):
    """Accounts where every word of `text` starts a word of login, name or last name, ignoring
    case and diacritics; best matches first, at most `limit` (None: all). The words are the only
    input put into the search syntax, quoted, so nothing in `text` acts as FTS syntax."""
    words = re.findall(_WORD, text)[:8]
    if not words:
        return []
    if limit is None:
        limit = -1  # SQLite: no upper bound
    if getattr(conn, "engine", "sqlite") == "postgresql":
        return conn.execute(
            "SELECT users.* FROM users, to_tsquery('b24recover_names', ?) AS q"
            " WHERE to_tsvector('b24recover_names', regexp_replace(login || ' ' || name || ' ' || last_name,"
            " '[[:punct:][:space:]]+', ' ', 'g')) @@ q ORDER BY ts_rank(to_tsvector('b24recover_names',"
            " regexp_replace(login || ' ' || name || ' ' || last_name, '[[:punct:][:space:]]+', ' ', 'g')), q) DESC,"
            " users.id LIMIT ?",
            (" & ".join(w + ":*" for w in words), None if limit < 0 else limit),  # LIMIT NULL: all
        ).fetchall()
    return conn.execute(
        "SELECT users.* FROM users_fts JOIN users ON users.id = users_fts.rowid"
        " WHERE users_fts MATCH ? ORDER BY rank LIMIT ?",
        (" AND ".join('"' + w + '"*' for w in words), limit),
    ).fetchall()


def _listing_where(social_only: bool, blocked: bool, must_change: bool) -> str:
    where = []
    if social_only:
        where.append("password_hash IS NULL AND EXISTS (SELECT 1 FROM social_identities s WHERE s.user_id = users.id)")
    if blocked:
        where.append("blocked = 1")
    if must_change:
        where.append("must_change_password = 1")
    return (" WHERE " + " AND ".join(where)) if where else ""


def listing(conn, *, social_only: bool, blocked: bool, must_change: bool, limit: int | None = None):
    sql = "SELECT * FROM users" + _listing_where(social_only, blocked, must_change) + " ORDER BY login_key"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return conn.execute(sql)


def count_listing(conn, *, social_only: bool, blocked: bool, must_change: bool) -> int:
    return conn.execute("SELECT count(*) FROM users" + _listing_where(social_only, blocked, must_change)).fetchone()[0]


def socials(conn, user_id: int):
    return conn.execute(
        "SELECT provider, subject, created_at FROM social_identities WHERE user_id = ? ORDER BY provider, subject",
        (user_id,),
    ).fetchall()


def providers_and_pending(conn, user_id: int) -> tuple[list[str], str | None]:
    """The account's social providers (sorted, once each) and its pending address, in one query:
    on a PostgreSQL store every query is a round trip, and `lookup` shows both for each match."""
    rows = conn.execute(
        "SELECT DISTINCT 0 AS part, provider AS value FROM social_identities WHERE user_id = ?"
        " UNION ALL SELECT 1, address FROM pending_addresses WHERE user_id = ? ORDER BY part, value",
        (user_id, user_id),
    ).fetchall()
    return [r["value"] for r in rows if r["part"] == 0], next((r["value"] for r in rows if r["part"] == 1), None)


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
