"""The append-only, hash-chained audit trail."""

from __future__ import annotations

import hashlib
import hmac
import json

GENESIS = "0" * 64


def event_hash(prev_hash: str, event_id: int, at: int, actor: str, action: str, login: str | None, details: str) -> str:
    payload = json.dumps([event_id, at, actor, action, login, details], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def head_mac(key: bytes, last_id: int, last_hash: str) -> str:
    """The head's authenticator: without the key, nobody can write a head for a shortened trail."""
    return hmac.new(key, f"b24recover audit head v1:{last_id}:{last_hash}".encode("ascii"), hashlib.sha256).hexdigest()


def head(conn):
    """The recorded head (last_id, last_hash, mac), or None before the first event."""
    return conn.execute("SELECT last_id, last_hash, mac FROM audit_head WHERE one = 1").fetchone()


TAINTED = "tainted:"  # a head that did not match its key when the next event came; kept as evidence


def seal_head(conn, key: bytes) -> None:
    """Start the head at the trail's newest event: only `init`, right after the migration that
    added the head to a store whose trail already had events."""
    last = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    if last is not None and head(conn) is None:
        _write_head(conn, last[0], last[1], head_mac(key, last[0], last[1]))


def _write_head(conn, last_id: int, last_hash: str, mac: str) -> None:
    conn.execute(
        "INSERT INTO audit_head (one, last_id, last_hash, mac) VALUES (1, ?, ?, ?) ON CONFLICT (one) DO UPDATE"
        " SET last_id = excluded.last_id, last_hash = excluded.last_hash, mac = excluded.mac",
        (last_id, last_hash, mac),
    )


def append(conn, *, at: int, actor: str, action: str, login: str | None, details: dict | None = None,
           key: bytes) -> tuple[int, str]:
    """Append one event and move the head to it, in the caller's write transaction (so the chain
    cannot fork and the head never lags). Returns (id, hash).

    The chain continues from the head, not from the table's last row: events deleted from the
    end stay a visible gap. A head that does not match the key (or is missing while events exist)
    is not laundered by the next event: the new head is marked tainted, which --verify reports."""
    from ..services.identifiers import login_key

    current = head(conn)
    last = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    last_id, last_hash = (last[0], last[1]) if last else (0, GENESIS)
    if current is None:
        event_id, prev, sound = last_id + 1, last_hash, last is None
    else:
        # Deleted newest events stay a gap (continue after the head); events added behind the
        # head's back keep their ids (continue after them).
        event_id = max(current["last_id"], last_id) + 1
        prev = current["last_hash"] if current["last_id"] >= last_id else last_hash
        sound = (hmac.compare_digest(current["mac"], head_mac(key, current["last_id"], current["last_hash"]))
                 and (current["last_id"], current["last_hash"]) == (last_id, last_hash))
    if sound:
        mac = None
    elif current is not None and current["mac"].startswith(TAINTED):
        mac = current["mac"]  # the first sign of tampering is the one kept
    else:
        mac = f"{TAINTED}{event_id}"
    body = json.dumps(details or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = event_hash(prev, event_id, at, actor, action, login, body)
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, login, login_key, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, at, actor, action, login, login_key(login) if login else None, body, prev, digest),
    )
    _write_head(conn, event_id, digest, mac or head_mac(key, event_id, digest))
    return event_id, digest


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
