"""`portal sync` and `portal status` against real MariaDB and PostgreSQL servers (SPEC §2, §6).

Each engine gets one database for this module (dropped afterwards); every test empties its
tables first. No server: skipped with the reason, a failure under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

from portal_db import PORTAL_USERS, PORTAL_USERS_CP1251, PortalDB, expected

from conftest import ROOT, connect_db

TABLES = ("b_user", "b_user_phone_auth", "b_socialservices_user", "b_group", "b_user_group", "b_option")
OLD = "2025-03-01 10:00:00"  # rows written long before any sync: no overlap re-read
POLICY_ADMINS = 'a:3:{s:17:"CHECKWORD_TIMEOUT";s:2:"60";s:15:"PASSWORD_LENGTH";s:2:"10";s:15:"PASSWORD_DIGITS";s:1:"Y";}'
POLICY_EVERYONE = 'a:2:{s:17:"CHECKWORD_TIMEOUT";i:2880;s:15:"PASSWORD_LENGTH";i:6;}'


@pytest.fixture(scope="module", params=["mariadb", "postgres"])
def server_db(request):
    db = PortalDB.create(request.param)
    yield db
    db.drop()


@pytest.fixture
def portal(server_db):
    server_db.empty(TABLES)
    return server_db


def now_sql(db: PortalDB) -> str:
    return "NOW()" if db.engine == "mariadb" else "LOCALTIMESTAMP"


def bitrix6(password: str, salt: str = "AbCdEfGh12345678", charset: str = "utf-8") -> str:
    """Password::hash, by an independent implementation (passlib), over the charset's bytes."""
    secret = password.encode("cp1251" if charset == "windows-1251" else "utf-8")
    return sha512_crypt.using(salt=salt, rounds=5000).hash(secret)


def salted_md5(password: str, salt: str) -> str:
    return salt + hashlib.md5((salt + password).encode()).hexdigest()


def add(db: PortalDB, login: str, *, ts: str = OLD, **cols) -> int:
    """Insert a b_user row (upper-case names; PostgreSQL folds them) and return its ID."""
    return db.insert_user({"LOGIN": login, "PASSWORD": cols.pop("PASSWORD", salted_md5("x", "s4lt")),
                           "TIMESTAMP_X": ts, **cols})


def realistic(db: PortalDB) -> dict:
    """Rows the way Bitrix writes them, one for each case SPEC §4 and §6 name."""
    db.execute("INSERT INTO b_group (ID, NAME, SECURITY_POLICY) VALUES (1, 'Administrators', %s),"
               " (2, 'Everyone', %s), (3, 'Broken', 'O:8:\"stdClass\":0:{}')", (POLICY_ADMINS, POLICY_EVERYONE))
    db.execute("INSERT INTO b_option (MODULE_ID, NAME, VALUE) VALUES ('main', 'new_user_email_uniq_check', 'N')")
    ids = {}
    ids["admin"] = add(db, "admin", PASSWORD=bitrix6("Пароль-1"), EMAIL="admin@example.com",
                       PERSONAL_PHONE="+7 495 111-22-33", NAME="Админ", LANGUAGE_ID="ru")
    db.execute("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES (%s, '+79123456789', 'Y')",
               (ids["admin"],))
    db.execute("INSERT INTO b_user_group (USER_ID, GROUP_ID) VALUES (%s, 1), (%s, 3)", (ids["admin"], ids["admin"]))
    ids["anna"] = add(db, "anna", PASSWORD=salted_md5("secret", "a;b,c\\d"), EMAIL="shared@example.com",
                      NAME="Анна", LAST_NAME="Иванова\tмл.", PERSONAL_PHONE="+7 495 000-00-00", LANGUAGE_ID="ru")
    ids["boris"] = add(db, "boris", PASSWORD=hashlib.md5(b"boris").hexdigest(), EMAIL="Shared@Example.com",
                       PERSONAL_PHONE="+7 495 000-00-00")
    ids["ldap_admin"] = add(db, "admin", EXTERNAL_AUTH_ID="LDAP#1", PASSWORD="x" * 8, EMAIL="admin@corp.local")
    ids["social"] = add(db, "vk_777", EXTERNAL_AUTH_ID="socservices", PASSWORD="random" * 6, NAME="Пётр")
    db.execute("INSERT INTO b_socialservices_user (LOGIN, EXTERNAL_AUTH_ID, USER_ID, XML_ID) VALUES"
               " ('vk_777', 'VKontakte', %s, '777'), ('g', 'GoogleOAuth', %s, 'g-456')", (ids["social"], ids["social"]))
    ids["bot"] = add(db, "bot_1", EXTERNAL_AUTH_ID="bot", PASSWORD="")
    ids["nulls"] = add(db, "nulls", PASSWORD=salted_md5("x", "q" * 40))
    ids["blocked"] = add(db, "blocked", BLOCKED="Y", EMAIL="blocked@example.com")
    ids["inactive"] = add(db, "inactive", ACTIVE="N")
    ids["expired"] = add(db, "expired", PASSWORD_EXPIRED="Y", PASSWORD=salted_md5("x", "12345678"))
    ids["cyrillic"] = add(db, "пётр.иванов", NAME="Пётр", LAST_NAME="Иванов", EMAIL="petr@пример.example")
    ids["bad_hash"] = add(db, "broken", PASSWORD="$6$rounds=1000$abcdefgh$" + "A" * 86)
    ids["bad_email"] = add(db, "noemail", EMAIL="not an address")
    return ids


@pytest.fixture
def run(store, cli, config_path, portal):
    """cli(...) with [portal] dsn naming this test's portal database."""
    config_path.write_text(config_path.read_text(encoding="utf-8") + f'[portal]\ndsn = "{portal.dsn}"\n',
                           encoding="utf-8")
    return cli


def sync(run, *args) -> dict:
    result = run("portal", "sync", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return result.json


def show(run, login: str) -> dict:
    result = run("user", "show", login, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json


def store_rows(db_path, sql: str, params=()):
    conn = connect_db(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# ---- the first sync ------------------------------------------------------------------------

def test_every_case_of_a_real_portal(run, portal, db_path):
    ids = realistic(portal)
    out = sync(run)
    refused = {r["portal_id"]: r for r in out["refused"]}
    assert set(refused) == {ids["bad_hash"], ids["bad_email"]}
    assert refused[ids["bad_hash"]]["login"] == "broken" and "PASSWORD" in refused[ids["bad_hash"]]["reason"]
    assert (out["added"], out["updated"], out["unchanged"], out["gone"]) == (len(ids) - 2, 0, 0, 0)

    admin = show(run, "admin")
    assert admin["portal_id"] == ids["admin"] and admin["external"] is None
    assert admin["phone"] == "+79123456789"                       # b_user_phone_auth, not PERSONAL_PHONE
    assert admin["portal"]["checkword_timeout_minutes"] == 60     # the strictest of groups 1, 2 and 3
    assert admin["portal"]["group_policy"]["PASSWORD_LENGTH"] == 10
    assert admin["portal"]["group_policy"]["PASSWORD_DIGITS"] is True
    assert admin["portal"]["synced_at"] == admin["portal_synced_at"] is not None
    assert admin["name"] == "Админ" and admin["lang"] == "ru"
    # The LDAP account with the same login is a second account, managed elsewhere.
    rows = store_rows(db_path, "SELECT portal_id, external, password_hash IS NULL FROM users WHERE login_key = 'admin'"
                      " ORDER BY portal_id")
    assert rows == [(ids["admin"], None, 0), (ids["ldap_admin"], "LDAP#1", 1)]
    # Duplicate emails (the portal's option is N), a shared office phone kept as profile data.
    shared = store_rows(db_path, "SELECT login, phone, profile_phone FROM users WHERE email_key = 'shared@example.com'"
                        " ORDER BY login")
    assert [r[0] for r in shared] == ["anna", "boris"]
    assert sorted(r[1] for r in shared if r[1]) == ["+74950000000"] and all(r[2] for r in shared)
    anna = show(run, "anna")
    assert anna["last_name"] == "Иванова мл." and anna["name"] == "Анна"
    social = show(run, "vk_777")
    assert social["has_password"] is False
    assert {(s["provider"], s["subject"]) for s in social["social_identities"]} == {("vkontakte", "777"),
                                                                                   ("googleoauth", "g-456")}
    assert show(run, "bot_1")["external"] == "bot"
    nulls = show(run, "nulls")
    assert (nulls["email"], nulls["phone"], nulls["name"], nulls["lang"]) == (None, None, "", None)
    assert show(run, "blocked")["state"] == "blocked" and show(run, "inactive")["state"] == "blocked"
    assert show(run, "expired")["must_change_password"] is True
    assert show(run, "пётр.иванов")["last_name"] == "Иванов"
    # The hashes are the portal's own, byte for byte.
    assert store_rows(db_path, "SELECT password_hash FROM users WHERE portal_id = ?", (ids["admin"],))[0][0] == \
        bitrix6("Пароль-1")
    events = store_rows(db_path, "SELECT details FROM audit_log WHERE action = 'portal.sync'")
    assert len(events) == 1
    details = json.loads(events[0][0])
    assert (details["added"], details["refused"], details["full"]) == (len(ids) - 2, 2, True)


def test_a_synced_portal_password_verifies(run, portal):
    """The $6$ hash read from the portal is the portal's own: the portal password works here."""
    realistic(portal)
    sync(run)
    wrong = run("passwd", "admin", "--password-stdin", input="not it\nnew long passphrase 2\n")
    assert wrong.exit_code == 6
    assert run("passwd", "admin", "--password-stdin", input="Пароль-1\nnew long passphrase 2\n").exit_code == 0
    assert run("passwd", "anna", "--password-stdin", input="secret\nanother long passphrase\n").exit_code == 0


def test_lookup_diagnose_and_show_say_when_the_account_was_read(run, portal):
    add(portal, "olga", EMAIL="olga@example.com")
    sync(run)
    text = run("user", "show", "olga")
    assert "last read from the portal at 20" in text.stdout
    diag = run("diagnose", "olga")
    assert "last read from the portal at 20" in diag.stdout
    assert run("diagnose", "olga", "--json").json["portal"]["synced_at"]
    listing = run("lookup", "olga")
    assert "Read from portal" in listing.stdout.splitlines()[0]


def test_email_uniqueness_follows_the_portal(run, portal, db_path):
    portal.execute("INSERT INTO b_option (MODULE_ID, NAME, VALUE) VALUES ('main', 'new_user_email_uniq_check', 'Y')")
    first = add(portal, "first", EMAIL="same@example.com")
    second = add(portal, "second", EMAIL="same@example.com")
    out = sync(run)
    assert out["email_unique"] is True and out["added"] == 1
    assert [(r["portal_id"], r["login"]) for r in out["refused"]] == [(second, "second")]
    assert "email" in out["refused"][0]["reason"] and f"portal ID {first}" in out["refused"][0]["reason"]


def test_the_portal_email_rule_replaces_the_config_for_the_whole_store(run, portal, config_path):
    """[accounts] unique_email is true by default; the portal's 'N' wins once it was synced."""
    portal.execute("INSERT INTO b_option (MODULE_ID, NAME, VALUE) VALUES ('main', 'new_user_email_uniq_check', 'N')")
    add(portal, "first", EMAIL="same@example.com")
    add(portal, "second", EMAIL="same@example.com")
    out = sync(run)
    assert out["email_unique"] is False and out["added"] == 2
    added = run("user", "add", "third", "--email", "same@example.com", "--password-stdin",
                input="correct horse battery staple\n")
    assert added.exit_code == 0, added.stderr
    assert run("portal", "status", "--json").json["email_unique"] is False
    portal.execute("UPDATE b_option SET VALUE = 'Y' WHERE NAME = 'new_user_email_uniq_check'")
    sync(run)
    fourth = run("user", "add", "fourth", "--email", "same@example.com", "--password-stdin",
                 input="correct horse battery staple\n")
    assert fourth.exit_code == 4


def test_a_conflict_is_retried_when_the_identifier_is_freed(run, portal, db_path):
    from conftest import add_user

    add_user(run, "local", "--phone", "+79990001122")
    pid = add(portal, "anna")
    portal.execute("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER) VALUES (%s, '+79990001122')", (pid,))
    out = sync(run)
    assert [r["portal_id"] for r in out["refused"]] == [pid] and "a local account" in out["refused"][0]["reason"]
    status = run("portal", "status", "--json").json
    assert status["refused"] == 1
    assert run("user", "update", "local", "--clear-phone").exit_code == 0
    again = sync(run)   # the portal row did not change; the conflict is retried all the same
    assert again["refused"] == [] and again["added"] == 1
    assert show(run, "anna")["phone"] == "+79990001122"
    assert run("portal", "status", "--json").json["refused"] == 0


def test_a_local_account_with_the_same_login_is_adopted(run, portal, db_path):
    from conftest import add_user

    add_user(run, "anna", "--email", "anna@old.example.com")
    pid = add(portal, "anna", EMAIL="anna@example.com")
    out = sync(run)
    assert (out["added"], out["updated"]) == (0, 1)
    assert store_rows(db_path, "SELECT count(*), max(portal_id), max(email) FROM users") == [(1, pid, "anna@example.com")]


def _compare_with_expectations(cli, db_path, users) -> None:
    """Every row became the account written down by hand in tests/portal_db.py, or was refused."""
    out = cli("portal", "sync", "--json")
    assert out.exit_code == 0, out.stderr
    refused = {r["portal_id"]: r["reason"] for r in out.json["refused"]}
    for user in users:
        pid = user.row["ID"]
        if "refused" in user.expect:
            assert user.expect["refused"] in refused.get(pid, ""), (pid, refused.get(pid))
            continue
        assert pid not in refused, (pid, refused[pid])
        want = expected(user)
        row = store_rows(db_path, "SELECT id, login, external, email, phone, profile_phone, name, last_name,"
                         " password_hash, blocked, lang FROM users WHERE portal_id = ?", (pid,))
        assert len(row) == 1, pid
        uid, *values = row[0]
        got = dict(zip(("login", "external", "email", "phone", "profile_phone", "name", "last_name",
                        "password_hash", "blocked", "lang"), values))
        got["blocked"] = bool(got["blocked"])
        got["social"] = set(store_rows(db_path, "SELECT provider, subject FROM social_identities WHERE user_id = ?",
                                       (uid,)))
        for key, value in got.items():
            assert value == want[key], (pid, key, value, want[key])
    assert out.json["added"] == sum("refused" not in u.expect for u in users)


def test_the_shared_portal_rows_become_the_expected_accounts(run, portal, db_path):
    portal.fill(PORTAL_USERS)
    _compare_with_expectations(run, db_path, PORTAL_USERS)


def test_cp1251_database(store, cli, config_path, db_path):
    db = PortalDB.create("mariadb", charset="cp1251")
    try:
        config_path.write_text(config_path.read_text(encoding="utf-8")
                               + f'[portal]\ndsn = "{db.dsn}"\ncharset = "windows-1251"\n', encoding="utf-8")
        db.fill(PORTAL_USERS_CP1251)
        _compare_with_expectations(cli, db_path, PORTAL_USERS_CP1251)
        # A Cyrillic password hashed over cp1251 bytes by the portal verifies here.
        wrong = cli("passwd", "s.long", "--password-stdin", input="пароль без соли\nновый длинный пароль 9\n")
        assert wrong.exit_code == 6
        ok = cli("passwd", "s.long", "--password-stdin", input="пароль с солью\nновый длинный пароль 9\n")
        assert ok.exit_code == 0, ok.stderr
        status = cli("portal", "status", "--json").json
        assert status["charset"].lower() == "cp1251" and status["charset_matches"] is True
        shown = cli("user", "show", "m.volkova", "--json").json
        assert (shown["name"], shown["last_name"]) == ("Марина", "Вол кова")
    finally:
        db.drop()


# ---- incremental and full ----------------------------------------------------------------------

def touch(db: PortalDB, pid: int, ts: str | None = None, **cols) -> None:
    sets = ", ".join(f"{k} = %s" for k in cols) + (", " if cols else "")
    stamp = "%s" if ts else now_sql(db)
    db.execute(f"UPDATE b_user SET {sets}TIMESTAMP_X = {stamp} WHERE ID = %s",
               (*cols.values(), *([ts] if ts else []), pid))


def test_incremental_reads_only_what_changed_and_is_idempotent(run, portal):
    ids = [add(portal, f"user{i}", EMAIL=f"user{i}@example.com", ts=f"2025-03-01 10:00:{i:02d}") for i in range(20)]
    assert sync(run)["added"] == 20
    again = sync(run)
    assert (again["read"], again["added"], again["updated"], again["unchanged"]) == (0, 0, 0, 0)
    touch(portal, ids[3], EMAIL="new3@example.com")
    add(portal, "late", ts="2025-03-02 00:00:00")
    out = sync(run)
    assert (out["added"], out["updated"], out["refused"]) == (1, 1, [])
    assert out["read"] <= 3   # the changed row, the new row, and at most the overlap
    assert show(run, "user3")["email"] == "new3@example.com"
    final = sync(run)
    assert final["added"] == final["updated"] == 0


def test_a_row_stamped_in_the_same_second_as_the_cursor_is_not_missed(run, portal):
    """Two writes in the second the cursor stopped at: the one with the lower ID commits after
    the sync read the other. The cursor (TIMESTAMP_X, ID) alone would skip it."""
    a = add(portal, "a", ts="2025-03-01 10:00:00")
    b = add(portal, "b", ts="2025-03-01 10:00:00")
    assert sync(run)["added"] == 2
    now = portal.query(f"SELECT {now_sql(portal)}")[0][0]
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    touch(portal, b, ts=stamp, NAME="B")   # read by the next sync, which moves the cursor to (now, b)
    assert sync(run)["updated"] == 1
    touch(portal, a, ts=stamp, NAME="A")   # same second, lower ID, after that read
    out = sync(run)
    assert out["updated"] == 1, out
    assert show(run, "a")["name"] == "A"


def test_a_change_in_the_portal_wins_but_an_unchanged_row_keeps_local_changes(run, portal):
    pid = add(portal, "anna", EMAIL="anna@example.com", NAME="Anna")
    sync(run)
    assert run("user", "block", "anna").exit_code == 0         # done locally, not in the portal
    sync(run, "--full")
    assert show(run, "anna")["state"] == "blocked"               # the portal row did not change
    touch(portal, pid, NAME="Anne")
    sync(run)
    shown = show(run, "anna")
    assert shown["name"] == "Anne" and shown["state"] == "blocked"   # only the field the portal changed


def test_a_password_change_in_the_portal_revokes_the_control_string(run, portal, db_path):
    pid = add(portal, "anna", EMAIL="anna@example.com")
    sync(run)
    assert run("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    touch(portal, pid, PASSWORD=bitrix6("new one"))
    assert sync(run)["updated"] == 1
    states = store_rows(db_path, "SELECT state, end_reason FROM control_strings")
    assert states == [("revoked", "account_changed")]


def test_full_sync_marks_the_accounts_gone_from_the_portal(run, portal, db_path):
    keep = add(portal, "keep", EMAIL="keep@example.com")
    gone = add(portal, "gone", EMAIL="gone@example.com")
    sync(run)
    assert run("token", "issue", "gone", "--via", "none", "--json").exit_code == 0
    portal.execute("DELETE FROM b_user WHERE ID = %s", (gone,))
    assert sync(run)["gone"] == 0            # an incremental read cannot see a deletion
    out = sync(run, "--full")
    assert (out["gone"], out["unchanged"], out["added"]) == (1, 1, 0)
    assert store_rows(db_path, "SELECT login, portal_gone FROM users ORDER BY login") == [("gone", 1), ("keep", 0)]
    assert store_rows(db_path, "SELECT state, end_reason FROM control_strings") == [("revoked", "portal_gone")]
    shown = show(run, "gone")
    assert shown["portal_gone"] is True
    diag = run("diagnose", "gone", "--json").json
    assert diag["findings"][0]["code"] == "portal_gone"
    # No recovery for it: operators are told why, the portal's form answers as always.
    issued = run("token", "issue", "gone", "--via", "email", "--json")
    assert issued.exit_code == 3 and "no longer exists in the portal" in issued.error["message"]
    reset = run("reset", "gone", "--generate", "--json")
    assert reset.exit_code == 3 and issued.error["code"] == reset.error["code"] == "not_found"
    request = run("token", "request", "gone@example.com", "--json")
    assert request.exit_code == 0 and request.json == run("token", "request", "nobody@example.com", "--json").json
    assert store_rows(db_path, "SELECT count(*) FROM control_strings WHERE state = 'active'") == [(0,)]
    assert run("token", "issue", "keep", "--via", "email", "--json").exit_code == 0
    assert sync(run, "--full")["gone"] == 0   # counted once
    assert run("portal", "status", "--json").json["gone"] == 1
    assert keep


def test_dry_run_writes_nothing_and_counts_the_same(run, portal, db_path):
    realistic(portal)
    dry = sync(run, "--dry-run")
    assert dry["dry_run"] is True
    assert store_rows(db_path, "SELECT count(*) FROM users") == [(0,)]
    assert store_rows(db_path, "SELECT count(*) FROM audit_log WHERE action = 'portal.sync'") == [(0,)]
    real = sync(run)
    for key in ("added", "updated", "unchanged", "gone"):
        assert dry[key] == real[key], key
    assert sorted(r["portal_id"] for r in dry["refused"]) == sorted(r["portal_id"] for r in real["refused"])


# ---- failures ----------------------------------------------------------------------------------

def test_an_unreachable_portal_is_exit_8_with_the_host(store, cli, config_path):
    config_path.write_text(config_path.read_text(encoding="utf-8") + '[portal]\ndsn = "mysql://bitrix@127.0.0.1:1/portal"\n',
                           encoding="utf-8")
    result = cli("portal", "sync", "--json")
    assert result.exit_code == 8
    assert result.error["code"] == "portal_unavailable" and "127.0.0.1:1" in result.error["message"]
    assert "Traceback" not in result.stderr
    status = cli("portal", "status", "--json")
    assert status.exit_code == 8 and status.json["reachable"] is False and status.json["engine"] == "mysql"
    text = cli("portal", "status")
    assert text.exit_code == 8 and "127.0.0.1:1" in text.stderr


def test_a_password_in_the_dsn_is_refused_and_never_shown(store, cli, config_path):
    config_path.write_text(config_path.read_text(encoding="utf-8")
                           + '[portal]\ndsn = "mysql://bitrix:Very-Secret-9@127.0.0.1/portal"\n', encoding="utf-8")
    for args in (("portal", "sync"), ("portal", "status", "--json"), ("lookup", "anna")):
        result = cli(*args)
        assert result.exit_code == 5, args
        assert "Very-Secret-9" not in result.stdout + result.stderr
        assert "password" in result.stderr and "password_env" in result.stderr


def test_the_password_comes_from_password_env_and_is_never_shown(run, portal, config_path, db_path, monkeypatch):
    """A database user with a password and SELECT rights only: the sync needs nothing more."""
    user, secret = f"ro_{portal.name[-8:]}", "Pw-" + portal.name[-10:]
    if portal.engine == "mariadb":
        portal.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{secret}'")
        portal.execute(f"GRANT SELECT ON {portal.name}.* TO '{user}'@'%%'")
        dsn = f"mysql://{user}@127.0.0.1:{portal.dsn.rsplit(':', 1)[1]}"
    else:
        portal.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{secret}'")
        portal.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
        dsn = f"postgresql://{user}@127.0.0.1:{portal.dsn.rsplit(':', 1)[1]}"
    try:
        add(portal, "anna", EMAIL="anna@example.com")
        text = config_path.read_text(encoding="utf-8").split("[portal]")[0]
        config_path.write_text(text + f'[portal]\ndsn = "{dsn}"\npassword_env = "B24_PORTAL_PW"\n', encoding="utf-8")
        missing = run("portal", "sync", "--json")
        assert missing.exit_code == 8 and "B24_PORTAL_PW" in missing.error["message"]
        monkeypatch.setenv("PGPASSWORD", "")
        monkeypatch.setenv("B24_PORTAL_PW", "wrong")
        wrong = run("portal", "sync", "--json")
        if portal.engine == "mariadb":  # the PostgreSQL server here trusts 127.0.0.1: any password passes
            assert wrong.exit_code == 8 and "refused the sign-in" in wrong.error["message"]
        monkeypatch.setenv("B24_PORTAL_PW", secret)
        out = run("portal", "sync", "--json")
        assert out.exit_code == 0, out.stderr
        assert store_rows(db_path, "SELECT login, portal_id IS NOT NULL FROM users") == [("anna", 1)]
        status = run("portal", "status", "--json")
        assert status.json["reachable"] is True
        everything = out.stdout + out.stderr + status.stdout + status.stderr + wrong.stderr
        stored = " ".join(r[0] or "" for r in store_rows(db_path, "SELECT details FROM audit_log"))
        assert secret not in everything and secret not in stored
        if isinstance(db_path, Path):  # the store's file, whatever its pages hold
            assert secret.encode() not in db_path.read_bytes()
        else:  # every row of every table of the PostgreSQL store
            conn = connect_db(db_path)
            assert not [line for line in conn.iterdump() if secret in line]
            conn.close()
    finally:
        if portal.engine == "mariadb":
            portal.execute(f"DROP USER '{user}'@'%%'")
        else:
            portal.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {user}")
            portal.execute(f"DROP ROLE {user}")


def test_no_portal_configured(store, cli):
    result = cli("portal", "sync", "--json")
    assert result.exit_code == 5 and result.error["code"] == "config_invalid"


# ---- kill -9 ----------------------------------------------------------------------------------

SLOW_SYNC = """
import sys, time
from b24recover.services import portal_sync
portal_sync.BATCH = 25
real = portal_sync._Run._batch
def slow(self, rows, *, retry):
    real(self, rows, retry=retry)
    time.sleep(0.05)           # a slow network: the kill lands between and inside batches
portal_sync._Run._batch = slow
from b24recover.__main__ import main
sys.argv = ["b24recover", *sys.argv[1:]]
main()
"""


def test_kill_9_mid_sync_then_resume(run, portal, db_path, config_path):
    total = 400
    values = ", ".join(f"('u{i:04d}', '{salted_md5('x', 'salt')}', 'u{i:04d}@example.com', '2025-03-01 10:{i // 60:02d}:{i % 60:02d}')"
                       for i in range(total))
    portal.execute(f"INSERT INTO b_user (LOGIN, PASSWORD, EMAIL, TIMESTAMP_X) VALUES {values}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-c", SLOW_SYNC, "--db", str(db_path), "--config", str(config_path), "portal", "sync", "--json"]
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = store_rows(db_path, "SELECT count(*) FROM users")[0][0]
        if done >= 75:
            break
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    state = store_rows(db_path, "SELECT run_mode, run_after_id FROM portal_sync_state")
    done = store_rows(db_path, "SELECT count(*), max(portal_id) FROM users")[0]
    assert 0 < done[0] < total, "the kill landed mid-sync"
    assert state[0][0] == "full" and state[0][1] == done[1]       # the resume point agrees with the rows
    if isinstance(db_path, Path):  # PostgreSQL's own WAL recovery needs no check from here
        assert store_rows(db_path, "PRAGMA integrity_check") == [("ok",)]
    out = sync(run)
    assert out["resumed"] is True and out["added"] == total       # counts include the part before the kill
    rows = store_rows(db_path, "SELECT count(*), count(DISTINCT portal_id), count(DISTINCT login_key) FROM users")
    assert rows == [(total, total, total)]
    state = store_rows(db_path, "SELECT run_mode, cursor_ts, cursor_id FROM portal_sync_state")
    last = portal.query("SELECT ID, TIMESTAMP_X FROM b_user ORDER BY TIMESTAMP_X DESC, ID DESC LIMIT 1")[0]
    assert state == [(None, last[1].isoformat(sep=" "), last[0])]
    assert sync(run)["added"] == 0


def test_a_second_sync_while_one_runs_is_refused(run, portal, db_path, config_path):
    values = ", ".join(f"('w{i:04d}', '{salted_md5('x', 'salt')}', '2025-03-01 10:{i // 60:02d}:{i % 60:02d}')"
                       for i in range(300))
    portal.execute(f"INSERT INTO b_user (LOGIN, PASSWORD, TIMESTAMP_X) VALUES {values}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-c", SLOW_SYNC, "--db", str(db_path), "--config", str(config_path), "portal", "sync", "--json"]
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while store_rows(db_path, "SELECT count(*) FROM users")[0][0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = run("portal", "sync", "--json")
        overlapped = child.poll() is None and store_rows(db_path, "SELECT count(*) FROM users")[0][0] < 300
        assert overlapped, "the first sync had finished: no overlap to test"
        assert second.exit_code == 8 and second.error["code"] == "store_locked"
    finally:
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert json.loads(out)["added"] == 300
    assert store_rows(db_path, "SELECT count(DISTINCT portal_id) FROM users") == [(300,)]


def test_refresh_rereads_one_account_now_without_moving_the_cursor(run, portal, db_path, config_path, clock):
    from b24recover.cli.guard import Globals, make_ctx
    from b24recover.services.portal_sync import refresh

    pid = add(portal, "anna", EMAIL="anna@example.com", NAME="Anna")
    add(portal, "boris", EMAIL="boris@example.com")
    sync(run)
    cursor = store_rows(db_path, "SELECT cursor_ts, cursor_id FROM portal_sync_state")
    touch(portal, pid, ts="2025-03-01 09:00:00", NAME="Anne")  # an older stamp: no sync would see it
    assert sync(run)["updated"] == 0
    ctx = make_ctx(Globals(db=str(db_path), config=str(config_path), actor="test", clock=clock))
    try:
        result = refresh(ctx, [pid])
    finally:
        ctx.store.close()
    assert (result.counts["updated"], result.counts["read"]) == (1, 1)
    assert show(run, "anna")["name"] == "Anne"
    assert store_rows(db_path, "SELECT cursor_ts, cursor_id FROM portal_sync_state") == cursor


def test_the_portal_transaction_is_read_only(portal):
    from b24recover.config import Settings
    from b24recover.portal.adapter import Portal

    settings = Settings()
    settings.portal.dsn = portal.dsn
    add(portal, "anna")
    with Portal.open(settings) as p:
        assert [r["LOGIN"] for r in p.users_by_id(0, 10)] == ["anna"]
        with pytest.raises(Exception, match="(?i)read.only"):
            with p.conn.cursor() as cur:
                cur.execute("UPDATE b_user SET NAME = 'written' WHERE LOGIN = 'anna'")
    assert portal.query("SELECT NAME FROM b_user")[0][0] is None
