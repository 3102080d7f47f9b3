"""store/purge.py rules that the end-to-end purge and --verify tests left open (found by
`make mutants`): how references to control_strings are found and cleared, what counts as an
append-only guard, and the event count --verify reports."""

from __future__ import annotations

import sqlite3

import pytest

from b24recover.config import load_settings
from b24recover.services.context import Ctx
from b24recover.store import purge
from b24recover.store.db import open_store
from conftest import add_user, connect_db

DAY = 86400
ACTIONS = {"SET NULL", "CASCADE", "RESTRICT", "NO ACTION", "SET DEFAULT"}


@pytest.fixture
def ctx(store, db_path, config_path, clock):
    opened = open_store(db_path)
    yield Ctx(store=opened, settings=load_settings(str(config_path), str(db_path)), clock=clock, actor="tester")
    opened.close()


def raw(db_path):
    return connect_db(db_path) if is_pg(db_path) else sqlite3.connect(db_path, isolation_level=None)


def is_pg(db_path) -> bool:
    return str(db_path).startswith("postgresql://")


def test_an_unknown_state_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^unknown state 'bogus'$"):
        purge._stale("bogus")


def test_references_name_only_links_to_control_strings(ctx):
    refs = purge.references(ctx.store.conn)
    assert ("outbox", "control_string_id", "SET NULL") in refs
    assert not [r for r in refs if r[:2] == ("outbox", "user_id")]  # outbox.user_id points at users
    assert {action for _, _, action in refs} <= ACTIONS  # upper case, as bulk_session compares them


def test_bulk_session_clears_set_null_links_itself_with_foreign_keys_off(ctx):
    # Every reference in the schema is ON DELETE SET NULL, so the purge takes the fast path.
    conn = ctx.store.conn
    with purge.bulk_session(conn) as set_null:
        assert ("outbox", "control_string_id") in set_null
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 0
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def _stale_string_with_a_note(store, clock, db_path, table):
    """A superseded control string past the retention that a row of `table` points at."""
    add_user(store, "anna", "--email", "anna@example.com")
    first = store("token", "issue", "anna", "--via", "none", "--json").json["id"]
    clock.advance(61)
    assert store("token", "issue", "anna", "--via", "none", "--json").exit_code == 0  # supersedes the first
    quoted = '"' + table.replace('"', '""') + '"'
    conn = raw(db_path)
    conn.execute(f"CREATE TABLE {quoted} (cs INTEGER REFERENCES control_strings(id) ON DELETE SET NULL)")
    conn.execute(f"INSERT INTO {quoted} (cs) VALUES (?)", (first,))
    conn.close()
    clock.advance(31 * DAY)
    return first


def test_a_link_from_a_table_whose_name_needs_quoting_is_cleared(store, clock, db_path):
    table = 'notes "on" tokens'
    first = _stale_string_with_a_note(store, clock, db_path, table)
    r = store("audit", "tokens", "--purge", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json["purged"] == 1
    conn = raw(db_path)
    assert conn.execute("SELECT count(*) FROM control_strings WHERE id = ?", (first,)).fetchone()[0] == 0
    assert conn.execute('SELECT cs FROM "notes ""on"" tokens"').fetchall() == [(None,)]
    if not is_pg(db_path):  # PostgreSQL enforces its references itself, always
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


# ---- --verify ---------------------------------------------------------------------------------

def _replace_guards(db_path, *triggers):
    conn = raw(db_path)
    conn.execute("BEGIN")
    conn.execute(f"DROP TRIGGER audit_log_no_update{' ON audit_log' if is_pg(db_path) else ''}")
    conn.execute(f"DROP TRIGGER audit_log_no_delete{' ON audit_log' if is_pg(db_path) else ''}")
    for sql in triggers:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.close()


def test_a_trigger_that_does_not_refuse_is_no_guard(store, db_path):
    add_user(store, "anna")
    if is_pg(db_path):
        _replace_guards(db_path,
                        "CREATE FUNCTION allow_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
                        " FOR EACH ROW EXECUTE FUNCTION allow_all()",
                        "CREATE TRIGGER audit_log_no_delete AFTER DELETE ON audit_log"
                        " FOR EACH ROW EXECUTE FUNCTION b24recover_append_only()")
    else:
        _replace_guards(db_path,
                        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT 1; END",
                        "CREATE TRIGGER audit_log_no_delete AFTER DELETE ON audit_log"
                        " BEGIN SELECT RAISE(ABORT, 'too late'); END")
    r = store("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"] is None
    assert r.json["guards_missing"] == ["UPDATE", "DELETE"]


def _delete_behind_the_guards(db_path, sql):
    """Run `sql` on the audit trail past its guards, which stay in place."""
    conn = raw(db_path)
    if is_pg(db_path):
        conn.execute("BEGIN")
        conn.execute("SET LOCAL session_replication_role = replica")  # user triggers do not fire
        conn.execute(sql)
        conn.execute("COMMIT")
        conn.close()
        return
    guards = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'"
                                         " AND tbl_name = 'audit_log'")]
    conn.close()
    _replace_guards(db_path, sql, *guards)


def test_verify_counts_the_events_that_are_there(store, db_path):
    for login in ("anna", "boris", "carl"):
        add_user(store, login)  # events 1 (init) to 4
    _delete_behind_the_guards(db_path, "DELETE FROM audit_log WHERE id = 2")
    r = store("audit", "log", "--verify", "--json")
    assert r.exit_code == 10
    assert r.json["events"] == 3 and r.json["checked"] == 1  # three left, the highest id is 4
