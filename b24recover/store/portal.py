"""The portal sync's own tables: the cursor, what each portal account looked like when last
read, and the rows refused. Accounts themselves stay in `users` (portal_id, portal_synced_at,
portal_gone)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from ..errors import B24Error
from .imports import chunks
from .locks import NamedLock

STATE_COLUMNS = ("run_id", "cursor_ts", "cursor_id", "horizon", "run_mode", "run_started_at", "run_horizon",
                 "run_after_ts", "run_after_id", "run_max_ts", "run_max_id", "run_counts", "last_sync_at",
                 "last_full_at", "email_unique", "engine", "version")


def state(conn) -> dict:
    row = conn.execute("SELECT * FROM portal_sync_state WHERE id = 1").fetchone()
    if row is None:
        return {c: None for c in STATE_COLUMNS} | {"run_counts": {}, "run_id": 0}
    out = {c: row[c] for c in STATE_COLUMNS}
    out["run_counts"] = json.loads(row["run_counts"] or "{}")
    return out


def save_state(conn, changes: dict) -> None:
    """Update the cursor row (created on first use); call inside the batch's transaction."""
    values = {k: (json.dumps(v, sort_keys=True) if k == "run_counts" else v) for k, v in changes.items()}
    unknown = set(values) - set(STATE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown sync state columns {sorted(unknown)}")
    conn.execute("INSERT INTO portal_sync_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
    if values:
        conn.execute(f"UPDATE portal_sync_state SET {', '.join(f'{k} = ?' for k in values)} WHERE id = 1",
                     list(values.values()))


def email_unique(conn) -> bool | None:
    """The portal's email-uniqueness rule as the last sync read it (None: never synced)."""
    row = conn.execute("SELECT email_unique FROM portal_sync_state WHERE id = 1").fetchone()
    return None if row is None or row[0] is None else bool(row[0])


def by_portal_ids(conn, portal_ids: list[int]) -> dict[int, dict]:
    """portal_id -> the account and its last read (digest, field digests), for the ids that have one."""
    found: dict[int, dict] = {}
    for chunk in chunks(portal_ids):
        sql = ("SELECT users.*, pa.digest AS portal_digest, pa.fields AS portal_fields FROM users"
               " LEFT JOIN portal_accounts pa ON pa.user_id = users.id"
               f" WHERE users.portal_id IN ({','.join('?' * len(chunk))})")
        for row in conn.execute(sql, chunk):
            found[row["portal_id"]] = dict(row)
    return found


def remember_reads(conn, reads: list[tuple]) -> None:
    """What each account's last read saw: (user_id, timestamp_x, digest, field digests, checkword_timeout,
    policy)."""
    conn.executemany(
        "INSERT INTO portal_accounts (user_id, timestamp_x, digest, fields, checkword_timeout, policy)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET timestamp_x = excluded.timestamp_x,"
        " digest = excluded.digest, fields = excluded.fields, checkword_timeout = excluded.checkword_timeout,"
        " policy = excluded.policy",
        [(u, ts, d, f, cw, _policy_json(p)) for u, ts, d, f, cw, p in reads])


def _policy_json(policy: dict, _seen: dict = {}) -> str:  # noqa: B006  (a cache: few distinct policies)
    key = tuple(sorted(policy.items()))
    text = _seen.get(key)
    if text is None:
        text = _seen[key] = json.dumps(dict(key), sort_keys=True)
    return text


def mark_read(conn, user_ids: list[int], now: int) -> None:
    """The accounts were read from the portal now (and so are not gone)."""
    for chunk in chunks(user_ids):
        conn.execute(f"UPDATE users SET portal_synced_at = ?, portal_gone = 0 WHERE id IN ({','.join('?' * len(chunk))})",
                     [now, *chunk])


def portal_ids(conn) -> dict[int, tuple[int, str, int]]:
    """portal_id -> (account id, login, gone) for every account read from the portal."""
    return {r[0]: (r[1], r[2], r[3]) for r in
            conn.execute("SELECT portal_id, id, login, portal_gone FROM users WHERE portal_id IS NOT NULL")}


def mark_gone(conn, user_ids: list[int], now: int) -> None:
    for chunk in chunks(user_ids):
        conn.execute(f"UPDATE users SET portal_gone = 1, updated_at = ? WHERE id IN ({','.join('?' * len(chunk))})",
                     [now, *chunk])


def refuse(conn, portal_id: int, login: str | None, reason: str, kind: str, run_id: int, now: int) -> None:
    conn.execute("INSERT INTO portal_refused (portal_id, login, reason, kind, run_id, at) VALUES (?, ?, ?, ?, ?, ?)"
                 " ON CONFLICT (portal_id) DO UPDATE SET login = excluded.login, reason = excluded.reason,"
                 " kind = excluded.kind, run_id = excluded.run_id, at = excluded.at",
                 (portal_id, login, reason, kind, run_id, now))


def accept(conn, portal_ids: list[int]) -> None:
    """These rows are accounts now (or gone): no longer refused."""
    for chunk in chunks(portal_ids):
        conn.execute(f"DELETE FROM portal_refused WHERE portal_id IN ({','.join('?' * len(chunk))})", chunk)


def refused(conn, *, run_id: int | None = None, kind: str | None = None) -> list:
    """Refused rows, all or those of one run / one kind, by portal id."""
    where, params = [], []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = "SELECT portal_id, login, reason, kind, run_id, at FROM portal_refused"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return conn.execute(sql + " ORDER BY portal_id", params).fetchall()


def counts(conn) -> dict:
    row = conn.execute("SELECT count(*) AS accounts, count(CASE WHEN portal_gone != 0 THEN 1 END) AS gone FROM users"
                       " WHERE portal_id IS NOT NULL").fetchone()
    return {"accounts": row["accounts"], "gone": row["gone"],
            "refused": conn.execute("SELECT count(*) FROM portal_refused").fetchone()[0]}


def read_of(conn, user_id: int):
    """What the last portal read stored for this account (checkword timeout, policy), or None."""
    row = conn.execute("SELECT timestamp_x, checkword_timeout, policy FROM portal_accounts WHERE user_id = ?",
                       (user_id,)).fetchone()
    if row is None:
        return None
    return {"timestamp_x": row["timestamp_x"], "checkword_timeout": row["checkword_timeout"],
            "policy": json.loads(row["policy"] or "{}")}


def replace_socials(conn, user_id: int, pairs, now: int) -> None:
    """The account's social identities become exactly `pairs` (the portal's list)."""
    wanted = set(pairs)
    have = {(r[0], r[1]) for r in conn.execute(
        "SELECT provider, subject FROM social_identities WHERE user_id = ?", (user_id,))}
    for provider, subject in have - wanted:
        conn.execute("DELETE FROM social_identities WHERE user_id = ? AND provider = ? AND subject = ?",
                     (user_id, provider, subject))
    for provider, subject in sorted(wanted - have):
        conn.execute("INSERT INTO social_identities (user_id, provider, subject, created_at) VALUES (?, ?, ?, ?)",
                     (user_id, provider, subject, now))


@contextmanager
def sync_lock(store):
    """One `portal sync` per store at a time (a slow full sync and the next cron run must not
    interleave their batches): the named lock `.sync.lock` (store/locks.py: a 0600 file beside a
    SQLite store, an advisory lock on PostgreSQL), released when the process ends, however it ends."""
    from .url import safe_name

    lock = NamedLock(store, ".sync.lock")
    try:
        if not lock.acquire(wait=False):
            raise B24Error("store_locked", f"another portal sync is running on {safe_name(store.path)}",
                           hint="Wait for it to finish (an interrupted one is finished by the next run).")
        yield
    finally:
        lock.close()
