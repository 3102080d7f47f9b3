"""Change the store behind the tool's back, as someone with write access to it could: the audit
trail, the schema version, the write lock. On SQLite or PostgreSQL (a `postgresql://` URL)."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager


def _is_pg(db_path) -> bool:
    return str(db_path).startswith("postgresql://")


def tamper(db_path, *statements, restore_guards=True):
    """Edit the trail behind the tool's back: switch the append-only triggers off, change it, and
    put them back (or leave them off: restore_guards=False)."""
    if _is_pg(db_path):
        return _tamper_pg(db_path, statements, restore_guards)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        guards = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'"
                                             " AND tbl_name = 'audit_log'")]
        conn.execute("BEGIN")
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)
        if restore_guards:
            for sql in guards:
                conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _tamper_pg(url, statements, restore_guards):
    """On PostgreSQL the table's owner can disable its triggers (no need to drop them)."""
    from conftest import connect_db

    conn = connect_db(url)
    try:
        conn.execute("BEGIN")
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for sql, params in statements:
            conn.execute(sql, params)
        if restore_guards:
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        conn.execute("COMMIT")
    finally:
        conn.close()


def schema_version(db_path) -> int:
    from conftest import connect_db

    conn = connect_db(db_path)
    try:
        sql = "SELECT coalesce(max(number), 0) FROM b24recover_schema" if _is_pg(db_path) else "PRAGMA user_version"
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def set_schema_version(db_path, number: int) -> None:
    """Make the store claim schema version `number` (a newer tool's store, or an older one's)."""
    from conftest import connect_db

    conn = connect_db(db_path)
    try:
        if _is_pg(db_path):
            conn.execute("DELETE FROM b24recover_schema WHERE number > ?", (number,))
            if schema_version(db_path) < number:
                conn.execute("INSERT INTO b24recover_schema (number, name) VALUES (?, 'from_the_future')", (number,))
        else:
            conn.execute(f"PRAGMA user_version = {int(number)}")
    finally:
        conn.close()


@contextmanager
def write_lock_held(db_path):
    """Another session holding the store's write lock (what every writer waits for) until the end."""
    from conftest import connect_db

    conn = connect_db(db_path)
    if _is_pg(db_path):
        from b24recover.store.pg import STORE_LOCK

        conn.execute("SELECT pg_advisory_lock(?)", (STORE_LOCK,))
        release = ("SELECT pg_advisory_unlock(?)", (STORE_LOCK,))
    else:
        conn.isolation_level = None
        conn.execute("BEGIN EXCLUSIVE")
        release = ("ROLLBACK", ())
    try:
        yield
    finally:
        conn.execute(*release)
        conn.close()
