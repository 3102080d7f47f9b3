"""Change the audit trail behind the tool's back, as someone with write access to the file could."""

from __future__ import annotations

import sqlite3


def tamper(db_path, *statements, restore_guards=True):
    """Edit the trail behind the tool's back: drop the triggers, change it, put them back."""
    if str(db_path).startswith("postgresql://"):
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
    """The same on PostgreSQL, as its owner could: switch the append-only triggers off meanwhile."""
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
