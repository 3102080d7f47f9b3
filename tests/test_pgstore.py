"""The store on PostgreSQL (SPEC §7): the URL, init and its schema version, the rules the schema
itself enforces, and the migration list's PostgreSQL form. Store-level behaviour shared with
SQLite runs in the other test files once per engine (conftest `engine`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import GOOD_PASSWORD, ROOT, add_user


def _pg(db_path):
    """A driver connection to the test store's schema (PGOPTIONS names it)."""
    import psycopg2

    from b24recover.store.url import StoreURL

    conn = psycopg2.connect(**StoreURL(str(db_path)).params)
    conn.autocommit = True
    return conn


def _sql(db_path, sql, params=()):
    conn = _pg(db_path)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture
def pg_only(engine):
    if engine != "postgresql":
        pytest.skip("a PostgreSQL behaviour")


# ---- the URL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_json", [(), ("--json",)])
def test_a_password_in_the_url_is_refused_and_never_echoed(as_json):
    for url in ("postgresql://root:s3cretPW@127.0.0.1/test", "postgres://root:s3cretPW@127.0.0.1:5432/test",
                "postgresql://root@127.0.0.1/test?password=s3cretPW"):
        for where in ("argv", "env"):
            args = ("--db", url) if where == "argv" else ()
            env = {"B24RECOVER_DB": url} if where == "env" else {}
            r = subprocess.run([sys.executable, "-m", "b24recover", *args, "lookup", "anna", *as_json],
                               capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60)
            assert r.returncode == 2, (url, r.stderr)
            assert "s3cretPW" not in r.stdout + r.stderr
            assert "PGPASSWORD" in r.stderr and "Traceback" not in r.stderr
            if as_json:
                assert json.loads(r.stderr.strip().splitlines()[-1])["error"]["code"] == "usage"


def test_an_unreachable_server_is_exit_8_naming_host_and_cause(proc):
    r = proc("--db", "postgresql://root@127.0.0.1:1/nosuch", "user", "list", "--json")
    assert r.exit_code == 8
    error = json.loads(r.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "store_missing"
    assert "127.0.0.1" in error["message"] and "refused" in error["message"].lower()
    assert "Traceback" not in r.stderr


def test_a_missing_database_is_store_missing_with_a_hint(proc):
    r = proc("--db", "postgresql://postgres@127.0.0.1/b24recover_no_such_db", "lookup", "anna", "--json")
    assert r.exit_code == 8, r.stderr
    error = json.loads(r.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "store_missing" and "does not exist" in error["message"]
    assert "createdb" in error["hint"]


def test_sqlite_lookup_does_not_import_the_driver(tmp_path):
    """A SQLite command never pays psycopg2's start-up."""
    db = tmp_path / "b24.db"
    code = ("import sys; from b24recover.__main__ import main; rc = main(['--db', sys.argv[1], 'lookup', 'anna']);"
            " print('psycopg2' in sys.modules, 'b24recover.store.pg' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.split() == ["False", "False"], r.stderr


# ---- init and the schema version ------------------------------------------------------------------

def test_init_is_idempotent_and_records_the_version(pg_only, cli, db_path):
    from b24recover.store.schema import MIGRATIONS, SCHEMA_VERSION

    first = cli("init", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json["applied"] == [name for name, _ in MIGRATIONS]
    assert cli("init", "--json").json["applied"] == []
    assert _sql(db_path, "SELECT max(number) FROM b24recover_schema") == [(SCHEMA_VERSION,)]


def test_version_checks_as_on_sqlite(pg_only, store, db_path):
    from b24recover.store.schema import SCHEMA_VERSION

    _sql(db_path, "INSERT INTO b24recover_schema (number, name) VALUES (%s, 'from_the_future')", (SCHEMA_VERSION + 1,))
    r = store("user", "list", "--json")
    assert r.exit_code == 8 and r.error["code"] == "store_too_new"
    assert store("init", "--json").error["code"] == "store_too_new"
    _sql(db_path, "DELETE FROM b24recover_schema WHERE number >= %s", (SCHEMA_VERSION,))
    r = store("user", "list", "--json")
    assert r.exit_code == 8 and r.error["code"] == "store_outdated"


def test_an_empty_database_is_store_missing(pg_only, cli):
    r = cli("lookup", "anna", "--json")
    assert r.exit_code == 8 and r.error["code"] == "store_missing"
    assert "init" in r.error["hint"]


def test_nodes_running_init_at_once_migrate_once(pg_only, db_path, config_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), "init", "--json"]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
                for _ in range(4)]
    results = [(c.wait(timeout=120), c.stdout.read(), c.stderr.read()) for c in children]
    assert [r[0] for r in results] == [0, 0, 0, 0], results
    applied = [json.loads(r[1])["applied"] for r in results]
    assert sorted(len(a) for a in applied)[:3] == [0, 0, 0] and max(len(a) for a in applied) > 0
    assert _sql(db_path, "SELECT count(*) FROM audit_log WHERE action = 'store.init'") == [(1,)]


# ---- what the schema enforces ---------------------------------------------------------------------

def test_the_audit_trail_refuses_update_delete_and_truncate(pg_only, store, db_path):
    import psycopg2

    add_user(store, "anna")
    for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg2.Error, match="append-only"):
            _sql(db_path, sql)
    assert store("audit", "log", "--verify").exit_code == 0


def test_at_most_one_active_control_string_per_account(pg_only, store, db_path):
    import psycopg2

    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    with pytest.raises(psycopg2.errors.UniqueViolation):
        _sql(db_path, "INSERT INTO control_strings (user_id, kind, channel, secret_hash, created_at, expires_at)"
                      " SELECT user_id, kind, channel, 'x', created_at, expires_at FROM control_strings")


def test_name_search_folds_case_and_diacritics(pg_only, store):
    add_user(store, "u1", "--name", "Łukasz", "--last-name", "Müller-Schön")
    add_user(store, "u2", "--name", "Ёлка", "--last-name", "Иванова")
    for query, login in (("lukasz", "u1"), ("MULLER", "u1"), ("schon", "u1"), ("müll łuk", "u1"),
                         ("иван", "u2"), ("ИВАНОВА", "u2")):
        r = store("lookup", query, "--by", "name", "--json")
        assert r.exit_code == 0, (query, r.stderr)
        assert [m["login"] for m in r.json["matches"]] == [login], query
    assert store("lookup", "schmidt", "--by", "name", "--json").exit_code == 3


def test_a_nul_byte_never_reaches_the_server(pg_only, store):
    add_user(store, "anna")
    r = store("lookup", "an\x00na", "--json")
    assert r.exit_code in (3, 5) and "Traceback" not in r.stderr


def test_a_server_gone_mid_command_is_exit_8(pg_only, store, db_path):
    """The guard turns a driver error into store_missing, never a traceback or a bug exit."""
    add_user(store, "anna", password=GOOD_PASSWORD)
    _sql(db_path, "ALTER TABLE users RENAME TO users_gone")
    r = store("user", "show", "anna", "--json")
    assert r.exit_code == 8 and r.error["code"] == "store_corrupt"
    assert "users" in r.error["message"]


# ---- the migration list on PostgreSQL ----------------------------------------------------------------

def test_every_migration_has_a_postgresql_form():
    """A new SQLite migration with a statement only SQLite runs fails here until it gets a
    POSTGRESQL entry in store/schema.py (docs/decisions.md, 'Adding a migration')."""
    from b24recover.store.schema import MIGRATIONS, postgresql_sql

    for name, sql in MIGRATIONS:
        assert postgresql_sql(name, sql), name


def test_a_sqlite_only_statement_without_a_variant_is_refused():
    from b24recover.store.schema import postgresql_sql, to_postgresql

    assert to_postgresql("ALTER TABLE users ADD COLUMN seen INTEGER NOT NULL DEFAULT 0") == \
        "ALTER TABLE users ADD COLUMN seen BIGINT NOT NULL DEFAULT 0"
    with pytest.raises(ValueError, match="POSTGRESQL"):
        postgresql_sql("9999_x", "CREATE TRIGGER t AFTER INSERT ON users BEGIN SELECT 1; END;")


def test_a_deadlock_with_a_foreign_session_is_retried_from_the_start(pg_only, store, db_path, monkeypatch):
    """Store.transact runs the body again after PostgreSQL aborted it as a deadlock victim (a
    foreign session holding locks); b24recover's own writers cannot deadlock each other."""
    import threading

    from b24recover.store.db import open_store

    add_user(store, "anna")
    # This process's connection detects deadlocks first, so it is the one PostgreSQL aborts.
    monkeypatch.setenv("PGOPTIONS", os.environ["PGOPTIONS"] + " -c deadlock_timeout=100ms")
    db = open_store(db_path)
    foreign = _pg(db_path)
    foreign.cursor().execute("SET deadlock_timeout = '10s'")
    holding, attempts = threading.Event(), []

    def other_session():
        cur = foreign.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(1001)")
        holding.set()
        cur.execute("SELECT pg_advisory_xact_lock(1002)")  # waits for the body, which waits for us
        cur.execute("COMMIT")

    def body(conn):
        attempts.append(1)
        if len(attempts) == 1:
            conn.execute("SELECT pg_advisory_xact_lock(1002)")
            thread.start()
            holding.wait(10)
            conn.execute("SELECT pg_advisory_xact_lock(1001)")  # deadlock: this one is aborted
        conn.execute("UPDATE users SET name = 'retried' WHERE login = 'anna'")
        return len(attempts)

    thread = threading.Thread(target=other_session)
    try:
        assert db.transact(body) == 2
    finally:
        thread.join(10)
        foreign.close()
        db.close()
    assert store("user", "show", "anna", "--json").json["name"] == "retried"
