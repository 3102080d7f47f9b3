"""The append-only, hash-chained audit trail."""

from __future__ import annotations

import hashlib
import json

GENESIS = "0" * 64


def event_hash(prev_hash: str, event_id: int, at: int, actor: str, action: str, login: str | None, details: str) -> str:
    payload = json.dumps([event_id, at, actor, action, login, details], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def append(conn, *, at: int, actor: str, action: str, login: str | None, details: dict | None = None) -> int:
    """Append one event; the caller holds the write transaction, so the chain cannot fork."""
    from ..services.identifiers import login_key

    last = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    event_id = (last[0] + 1) if last else 1
    prev = last[1] if last else GENESIS
    body = json.dumps(details or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = event_hash(prev, event_id, at, actor, action, login, body)
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, login, login_key, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, at, actor, action, login, login_key(login) if login else None, body, prev, digest),
    )
    return event_id


def query(conn, *, login_key: str | None, action: str | None, since: int | None, limit: int | None):
    where, params = [], []
    if login_key:
        where.append("login_key = ?")
        params.append(login_key)
    if action:
        where.append("action = ?")
        params.append(action)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    sql = "SELECT * FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    return list(reversed(rows))


def iterate(conn, batch: int = 5000):
    last = 0
    while True:
        rows = conn.execute("SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1]["id"]


def last_event(conn, login_key: str, actions: tuple[str, ...]):
    """The account's newest event among `actions`; one query, so the (login_key, id) index is used."""
    marks = ",".join("?" for _ in actions)
    return conn.execute(
        f"SELECT * FROM audit_log WHERE login_key = ? AND action IN ({marks}) ORDER BY id DESC LIMIT 1",
        (login_key, *actions),
    ).fetchone()
