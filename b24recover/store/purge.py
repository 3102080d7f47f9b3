"""SQL of `audit tokens`: which control strings are stale, deleting them a batch at a time, and
the integrity facts `audit log --verify` needs beyond the hash chain.

Stale means ended (superseded, used, revoked) before the cutoff, or still marked active but
expired before it. A control string that an undelivered outbox message (queued or failed)
points at is held back (queued, sending or failed): `outbox send` still needs it to deliver or to cancel that message.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

STATES = ("superseded", "used", "revoked", "expired")

_HELD = ("EXISTS (SELECT 1 FROM outbox o WHERE o.control_string_id = c.id"
         " AND o.status IN ('queued', 'sending', 'failed'))")


def _stale(state: str) -> str:
    """The WHERE clause for one kind of stale row; each one is a range scan of its own index."""
    if state == "expired":
        return "c.state = 'active' AND c.expires_at < :cutoff"
    if state in STATES:
        # Ended at or before the cutoff: "older than 0s" is everything that has ended, also in
        # this very second (an active one is valid through its expires_at second, so it has
        # ended once expires_at < cutoff).
        return "c.state = :state AND c.ended_at <= :cutoff"
    raise ValueError(f"unknown state {state!r}")


def stale_counts(conn, cutoff: int) -> tuple[dict[str, int], int]:
    """({state: purgeable rows}, rows that would be stale but are held by the outbox)."""
    counts, held = {}, 0
    for state in STATES:
        row = conn.execute(
            f"SELECT count(*), coalesce(sum(CASE WHEN {_HELD} THEN 1 ELSE 0 END), 0) FROM control_strings c"
            f" WHERE {_stale(state)}",
            {"state": state, "cutoff": cutoff},
        ).fetchone()
        counts[state] = row[0] - row[1]
        held += row[1]
    return counts, held


def delete_batch(conn, state: str, cutoff: int, limit: int, set_null: list[tuple[str, str]]) -> int:
    """Delete up to `limit` stale rows of one state inside the caller's write transaction.

    `set_null` lists (table, column) references to clear by hand when the connection runs with
    foreign keys off (see bulk_session); it is empty when SQLite enforces them itself."""
    if _pg(conn):
        # One statement, one round trip. `= ANY(ARRAY(...))` makes the delete fetch its rows by
        # primary key (an `IN (SELECT ...)` was planned as a hash join over the whole table), and
        # ORDER BY ended_at walks the (state, ended_at) index: a plain LIMIT was planned as a
        # sequential scan, which re-reads the rows earlier batches left dead before vacuum.
        order = "" if state == "expired" else " ORDER BY c.ended_at"
        return conn.execute(
            f"DELETE FROM control_strings WHERE id = ANY(ARRAY(SELECT c.id FROM control_strings c"
            f" WHERE {_stale(state)} AND NOT {_HELD}{order} LIMIT :limit))",
            {"state": state, "cutoff": cutoff, "limit": limit},
        ).rowcount
    ids = [r[0] for r in conn.execute(
        f"SELECT c.id FROM control_strings c WHERE {_stale(state)} AND NOT {_HELD} LIMIT :limit",
        {"state": state, "cutoff": cutoff, "limit": limit},
    )]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for table, column in set_null:
        conn.execute(f"UPDATE {_q(table)} SET {_q(column)} = NULL WHERE {_q(column)} IN ({marks})", ids)
    return conn.execute(f"DELETE FROM control_strings WHERE id IN ({marks})", ids).rowcount


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg(conn) -> bool:
    return getattr(conn, "engine", "sqlite") == "postgresql"


def references(conn) -> list[tuple[str, str, str]]:
    """(table, column, ON DELETE action) of every foreign key that points at control_strings."""
    if _pg(conn):
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT kcu.table_name, kcu.column_name, rc.delete_rule"
            " FROM information_schema.referential_constraints rc"
            " JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name"
            " AND kcu.constraint_schema = rc.constraint_schema"
            " JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.unique_constraint_name"
            " AND ccu.constraint_schema = rc.unique_constraint_schema"
            " WHERE rc.constraint_schema = current_schema() AND ccu.table_name = 'control_strings'")]
    found = []
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                         " AND name NOT LIKE 'sqlite_%'")]
    for table in tables:
        for fk in conn.execute(f"PRAGMA foreign_key_list({_q(table)})"):
            if fk["table"] == "control_strings":
                found.append((table, fk["from"], fk["on_delete"].upper()))
    return found


@contextmanager
def bulk_session(conn, cache_mib: int = 256):
    """Tune this connection for many short delete transactions; yields the set_null list.

    - A large page cache: each batch touches pages all over the per-account and state
      indexes, and a small cache would spill them to the WAL mid-transaction and read them back.
    - synchronous stays FULL (SPEC §5): every batch is durable when its transaction ends.
    - No automatic checkpoint after each commit: the purge checkpoints in the pauses it leaves
      for other writers (PASSIVE, never blocking anyone), so the time of the copy is time the
      write lock is free, and a page rewritten by several batches is copied back once.
    - Foreign keys off when every reference to control_strings is ON DELETE SET NULL: clearing
      those columns with one UPDATE per batch costs far less than SQLite's per-row action. Any
      other kind of reference keeps SQLite's enforcement on.

    PostgreSQL enforces its foreign keys itself (an indexed lookup per row, cheap) and has
    nothing to tune per connection here.
    """
    if _pg(conn):
        yield []
        return
    refs = references(conn)
    fast = all(action == "SET NULL" for _, _, action in refs)
    saved = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
             for name in ("cache_size", "wal_autocheckpoint", "foreign_keys")}
    conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    if fast:
        conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield [(t, c) for t, c, _ in refs] if fast else []
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for name, value in saved.items():
            conn.execute(f"PRAGMA {name} = {int(value)}")


def data_version(conn) -> int:
    """Changes whenever another connection commits: how the purge sees that a waiter got in.
    On PostgreSQL: the snapshot's xmax, which moves whenever any transaction took an id (wrote)."""
    if _pg(conn):
        return int(conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])
    return conn.execute("PRAGMA data_version").fetchone()[0]


def checkpoint(conn) -> None:
    """Copy the WAL back without waiting for anyone (never takes the write lock).
    PostgreSQL's checkpointer and autovacuum do this work on their own."""
    if not _pg(conn):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


# ---- the audit trail's own guards -----------------------------------------------------------

_GUARDS = {"UPDATE": re.compile(r"\bBEFORE\s+UPDATE\b", re.I), "DELETE": re.compile(r"\bBEFORE\s+DELETE\b", re.I)}


def missing_audit_guards(conn) -> list[str]:
    """Which of the append-only triggers (refusing UPDATE and DELETE, and on PostgreSQL TRUNCATE)
    audit_log has lost or has switched off."""
    if _pg(conn):
        # pg_trigger, not information_schema.triggers: that one lists a disabled trigger too
        # (ALTER TABLE ... DISABLE TRIGGER, which the table's owner can do); and the function
        # must still refuse (as on SQLite, a trigger without RAISE is no guard). tgtype bits:
        # 2 BEFORE, 8 DELETE, 16 UPDATE, 32 TRUNCATE.
        present = {op for op, bit in (("UPDATE", 16), ("DELETE", 8), ("TRUNCATE", 32)) if conn.execute(
            "SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = to_regclass('audit_log') AND NOT t.tgisinternal AND t.tgenabled <> 'D'"
            " AND p.proname = 'b24recover_append_only' AND p.prosrc ILIKE '%raise exception%'"
            " AND t.tgtype & 2 = 2 AND t.tgtype & ? = ?",
            (bit, bit)).fetchone()}
        return [op for op in (*_GUARDS, "TRUNCATE") if op not in present]
    bodies = [r[0] or "" for r in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")]
    return [op for op, pattern in _GUARDS.items()
            if not any(pattern.search(sql) and "RAISE" in sql.upper() for sql in bodies)]


def audit_bounds(conn) -> tuple[int, int | None]:
    """(number of events, highest id)."""
    row = conn.execute("SELECT count(*), max(id) FROM audit_log").fetchone()
    return row[0], row[1]
