"""The portal write-back queue (SPEC §6) and the record of the CHECKWORD b24recover wrote.

Claims reuse the outbox's leases (store/leases.py). One account's writes apply in the order they
were queued: a write is claimable only when no earlier write of the same portal account is
still open (or held by the same claimant, which applies them in id order), so a later password
never lands under an earlier checkword (or the reverse).
"""

from __future__ import annotations

import json

from . import leases

TABLE = "portal_writes"
_IN_ORDER = ("NOT EXISTS (SELECT 1 FROM portal_writes AS e WHERE e.portal_id = portal_writes.portal_id"
             " AND e.id < portal_writes.id AND e.status != 'done'"
             " AND NOT (e.status = 'sending' AND e.lease_owner = :owner))")  # held by this claimant: applied first


def insert(conn, *, user_id: int, portal_id: int, kind: str, payload: dict, now: int) -> int:
    cur = conn.execute("INSERT INTO portal_writes (user_id, portal_id, kind, payload, created_at)"
                       " VALUES (?, ?, ?, ?, ?) RETURNING id",  # lastrowid is SQLite's alone
                       (user_id, portal_id, kind, json.dumps(payload, sort_keys=True), now))
    return cur.fetchone()[0]


def by_id(conn, write_id: int):
    return conn.execute("SELECT * FROM portal_writes WHERE id = ?", (write_id,)).fetchone()


def claim(conn, write_id: int, *, owner: str, now: int, lease: int) -> bool:
    return leases.claim(conn, TABLE, write_id, owner=owner, now=now, lease=lease, also_where=_IN_ORDER)


def mark_done(conn, write_id: int, owner: str, now: int) -> bool:
    return leases.finish(conn, TABLE, write_id, owner, "done", done_at=now, error=None)


def mark_failed(conn, write_id: int, owner: str, error: str) -> bool:
    return leases.finish(conn, TABLE, write_id, owner, "failed", error=error[:500])


def claimable_ids(conn, now: int) -> list[int]:
    return leases.claimable_ids(conn, TABLE, now)


def counts(conn) -> dict:
    """Open write-backs: pending (queued or being applied) and failed."""
    # count(CASE ...): an integer on both engines (PostgreSQL has no sum of booleans)
    row = conn.execute("SELECT count(CASE WHEN status IN ('queued', 'sending') THEN 1 END),"
                       " count(CASE WHEN status = 'failed' THEN 1 END)"
                       " FROM portal_writes WHERE status != 'done'").fetchone()
    return {"pending": row[0], "failed": row[1]}


def open_for_user(conn, user_id: int) -> list:
    return conn.execute("SELECT * FROM portal_writes WHERE user_id = ? AND status != 'done' ORDER BY id",
                        (user_id,)).fetchall()


def remember_checkword(conn, user_id: int, digest: str, control_string_id: int | None, now: int) -> None:
    conn.execute("INSERT INTO portal_checkwords (user_id, digest, control_string_id, written_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (user_id) DO UPDATE SET digest = excluded.digest,"
                 " control_string_id = excluded.control_string_id, written_at = excluded.written_at,"
                 " superseded_at = NULL", (user_id, digest, control_string_id, now))


def checkword_of(conn, user_id: int):
    return conn.execute("SELECT * FROM portal_checkwords WHERE user_id = ?", (user_id,)).fetchone()


def mark_superseded(conn, user_id: int, now: int) -> None:
    conn.execute("UPDATE portal_checkwords SET superseded_at = ? WHERE user_id = ? AND superseded_at IS NULL",
                 (now, user_id))
