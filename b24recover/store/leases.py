"""Exclusive, leased claims on rows of a work queue (the outbox, the portal write-back queue).

A worker claims a row (`sending`, leased to one claim token until now + lease); a row another
worker holds is not taken until its lease has ended (that worker crashed or overran). Only the
claimant may record the result. The queues differ only in their table, their final status and
what a claim or a result also sets; the rule itself lives here once.
"""

from __future__ import annotations

# Statuses a worker may take a row from; 'sending' only once its lease has ended.
CLAIMABLE = "(status IN ('queued', 'failed') OR (status = 'sending' AND lease_until <= :now))"

_TABLES = {"outbox", "portal_writes"}


def _table(name: str) -> str:
    if name not in _TABLES:
        raise ValueError(f"not a leased queue: {name!r}")
    return name


def claim(conn, table: str, row_id: int, *, owner: str, now: int, lease: int, also_set: str = "",
          also_where: str = "", params: dict | None = None) -> bool:
    """Take the row for one worker; False when it is held by another, finished, or not eligible."""
    sets = "status = 'sending', lease_owner = :owner, lease_until = :until, attempts = attempts + 1, last_attempt_at = :now"
    cur = conn.execute(
        f"UPDATE {_table(table)} SET {sets}{', ' + also_set if also_set else ''}"
        f" WHERE id = :id AND {CLAIMABLE}{' AND ' + also_where if also_where else ''}",
        {**(params or {}), "owner": owner, "until": now + lease, "now": now, "id": row_id},
    )
    return cur.rowcount == 1


def finish(conn, table: str, row_id: int, owner: str, status: str, **values) -> bool:
    """Record the claimant's result (status plus columns) and end the lease; only the claimant may."""
    sets = ", ".join([f"{k} = :{k}" for k in values] + ["status = :status", "lease_owner = NULL", "lease_until = NULL"])
    cur = conn.execute(
        f"UPDATE {_table(table)} SET {sets} WHERE id = :id AND status = 'sending' AND lease_owner = :owner",
        {**values, "status": status, "id": row_id, "owner": owner},
    )
    return cur.rowcount == 1


def claimable_ids(conn, table: str, now: int, also_where: str = "") -> list[int]:
    """Rows a worker could claim now (queued, failed, or sending with an ended lease), oldest first."""
    where = CLAIMABLE + (f" AND {also_where}" if also_where else "")
    return [r[0] for r in conn.execute(f"SELECT id FROM {_table(table)} WHERE {where} ORDER BY id", {"now": now})]


def claimant() -> str:
    """A token for one claim: the pid for people reading the table, randomness for uniqueness."""
    import os
    import secrets

    return f"{os.getpid()}.{secrets.token_hex(8)}"
