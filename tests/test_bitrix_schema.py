"""Migration 0003_bitrix_accounts: the users table is rebuilt (logins unique per (login,
external id), email not UNIQUE, portal columns) and a store with data keeps every child row."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest
from conftest import connect_db

from b24recover.store import schema

NAME = "0003_bitrix_accounts"


INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg2.IntegrityError)


def is_pg(path) -> bool:
    return str(path).startswith("postgresql://")


def columns(conn, path, table) -> set:
    if is_pg(path):
        return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                            " WHERE table_schema = current_schema() AND table_name = ?", (table,))}
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def old_store(path, monkeypatch):
    """A store at the schema just before this migration, made by the real migration runner."""
    names = [m[0] for m in schema.MIGRATIONS]
    with monkeypatch.context() as patch:  # undoes this alone (not the fixture's PGOPTIONS)
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:names.index(NAME)])
        if is_pg(path):  # the PostgreSQL runner, with its forms of the migrations
            from b24recover.store import pg
            from b24recover.store.url import StoreURL

            pg.init_store(StoreURL(str(path)))[0].close()
            return connect_db(path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        schema.apply_migrations(conn)
        conn.execute("COMMIT")
    return conn


def fill(conn):
    conn.execute("BEGIN")
    for i in range(1, 4):
        conn.execute("INSERT INTO users (id, login, login_key, email, email_key, phone, name, last_name, created_at,"
                     " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'Иванова', 1, 1)",
                     (i, f"User{i}", f"user{i}", f"u{i}@example.com", f"u{i}@example.com", f"+7912000000{i}",
                      f"Анна{i}"))
    conn.execute("INSERT INTO social_identities (user_id, provider, subject, created_at) VALUES (1, 'google', 's1', 1)")
    conn.execute("INSERT INTO pending_addresses VALUES (2, 'email', 'x@example.com', 'x@example.com', 1)")
    conn.execute("INSERT INTO control_strings (id, user_id, kind, channel, secret_hash, created_at, expires_at)"
                 " VALUES (10, 1, 'link', 'email', 'h', 1, 99)")
    conn.execute("INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient, created_at)"
                 " VALUES (1, 10, 'email', 'recovery', 'ru', 'u1@example.com', 1)")
    conn.execute("INSERT INTO password_history (user_id, digest, created_at) VALUES (3, 'd', 1)")
    conn.execute("INSERT INTO audit_log (at, actor, action, login, login_key, prev_hash, hash)"
                 " VALUES (1, 't', 'user.add', 'User1', 'user1', '0', 'h1')")
    conn.execute("INSERT INTO bulk_jobs (id, fingerprint, mode, created_at) VALUES (1, 'f', 'control-string', 1)")
    conn.execute("INSERT INTO bulk_items VALUES (1, 'user1', 'done', NULL, 1)")
    conn.execute("COMMIT")


CHILDREN = ("social_identities", "pending_addresses", "control_strings", "outbox", "password_history",
            "audit_log", "bulk_jobs", "bulk_items")


def snapshot(conn):
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("users",) + CHILDREN}


def test_upgrade_keeps_every_row_and_reference(cli, db_path, monkeypatch):
    conn = old_store(db_path, monkeypatch)
    fill(conn)
    before = snapshot(conn)
    conn.close()

    r = cli("init")
    assert r.exit_code == 0, r.stderr
    conn = connect_db(db_path)
    after = snapshot(conn)
    for table in CHILDREN:
        kept = after[table][:len(before[table])] if table == "audit_log" else after[table]  # + init's event
        # later migrations may add columns to a table (outbox: its lease): the old ones are kept as they were
        assert [row[:len(old)] for row, old in zip(kept, before[table])] == [tuple(r) for r in before[table]], table
        assert len(kept) == len(before[table]), table
    assert [row[:16] for row in after["users"]] == [tuple(row) for row in before["users"]]
    if not is_pg(db_path):  # PostgreSQL checks its references and pages itself, always
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert {"portal_id", "external", "profile_phone", "portal_synced_at", "portal_gone"} <= columns(conn, db_path, "users")
    # The full-text index still matches the rows (its triggers were re-created).
    assert cli("lookup", "Анна2", "--by", "name", "--json").json["matches"][0]["login"] == "User2"
    conn.execute("UPDATE users SET name = 'Zoe' WHERE id = 3")
    conn.commit()
    assert cli("lookup", "Zoe", "--by", "name", "--json").json["matches"][0]["login"] == "User3"
    # Cascades still work afterwards: the references point at the new table.
    if not is_pg(db_path):
        conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM users WHERE id = 3")
    conn.commit()
    assert conn.execute("SELECT count(*) FROM password_history").fetchone()[0] == 0


def test_logins_unique_per_external_id_and_emails_repeat(store, db_path):
    conn = connect_db(db_path)

    def add(login, external=None, email=None):
        conn.execute("INSERT INTO users (login, login_key, external, email, email_key, created_at, updated_at)"
                     " VALUES (?, ?, ?, ?, ?, 1, 1)", (login, login.lower(), external, email, email))

    add("anna", None, "a@example.com")
    add("anna", "LDAP#1", "a@example.com")
    with pytest.raises(INTEGRITY_ERRORS):
        add("Anna")
    with pytest.raises(INTEGRITY_ERRORS):
        add("anna", "LDAP#1")
    conn.execute("UPDATE users SET portal_id = 7 WHERE external IS NULL")
    with pytest.raises(INTEGRITY_ERRORS):
        conn.execute("UPDATE users SET portal_id = 7 WHERE external IS NOT NULL")


def test_json_of_an_account_has_portal_id_and_external(store):
    r = store("user", "add", "qa1", "--password-stdin", "--json", input="correct horse battery staple\n")
    assert r.exit_code == 0, r.stderr
    assert (r.json["portal_id"], r.json["external"]) == (None, None)
