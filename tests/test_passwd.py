"""`passwd LOGIN`: current, new, confirm; imported Bitrix hashes made by real tools are accepted
and upgraded to bcrypt; a wrong current password is exit 6 and counted."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from conftest import GOOD_PASSWORD, add_user, connect_db
from b24recover.cli.runtime import SecretInput
from b24recover.services.passwords import scheme_of, verify_password
from tokenhelp import mails

NEW = "a fresh passphrase for 2026"


def row(db_path, login="anna"):
    conn = connect_db(db_path)
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()


def set_hash(db_path, stored: str, login="anna") -> None:
    conn = connect_db(db_path)
    conn.execute("UPDATE users SET password_hash = ? WHERE login = ?", (stored, login))
    conn.commit()
    conn.close()


def passwd(cli, current, new=NEW, login="anna", *extra):
    return cli("passwd", login, "--password-stdin", "--json", *extra, input=f"{current}\n{new}\n")


def events(db_path, action):
    """Audit events straight from the store (the trail is append-only and hash-chained)."""
    conn = connect_db(db_path)
    rows = conn.execute("SELECT actor, login, details FROM audit_log WHERE action = ? ORDER BY id", (action,))
    return [{"actor": a, "login": login, "details": json.loads(d)} for a, login, d in rows]


# ---- imported Bitrix hashes, produced by the real tools ----------------------------------------

def openssl_sha512_crypt(password: str, salt: str) -> str:
    done = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password.encode(),
                          capture_output=True, check=True)
    return done.stdout.decode().strip()


def md5sum(data: str) -> str:
    done = subprocess.run(["md5sum"], input=data.encode(), capture_output=True, check=True)
    return done.stdout.decode().split()[0]


LEGACY = {
    "sha512-crypt": lambda pw: openssl_sha512_crypt(pw, "Qx7fPz2kR4sT6uV8"),
    "md5-salted": lambda pw: "Ab3dEf9H" + md5sum("Ab3dEf9H" + pw),
    "md5": lambda pw: md5sum(pw),
}


@pytest.mark.parametrize("scheme", sorted(LEGACY))
@pytest.mark.parametrize("old", ["old bitrix password", "старый пароль битрикс"])
def test_legacy_hash_is_accepted_and_upgraded_to_bcrypt(store, db_path, scheme, old):
    add_user(store, "anna", "--email", "anna@example.com")
    stored = LEGACY[scheme](old)
    assert scheme_of(stored) == scheme
    set_hash(db_path, stored)
    assert store("user", "show", "anna", "--json").json["legacy_hash"] is True

    r = passwd(store, old)
    assert r.exit_code == 0, r.stderr
    assert r.json["upgraded_from"] == scheme and r.json["scheme"] == "bcrypt-sha256"
    now = row(db_path)["password_hash"]
    assert now.startswith("$bcrypt-sha256$v=2,") and verify_password(NEW, now)
    assert not verify_password(old, now)
    assert store("user", "show", "anna", "--json").json["legacy_hash"] is False
    assert events(db_path, "passwd")[-1]["details"]["upgraded_from"] == scheme
    # the old password no longer works
    again = passwd(store, old, "yet another passphrase 3")
    assert again.exit_code == 6 and again.error["code"] == "password_incorrect"


@pytest.mark.parametrize("scheme", sorted(LEGACY))
def test_wrong_password_against_a_legacy_hash_keeps_it(store, db_path, scheme):
    add_user(store, "anna")
    stored = LEGACY[scheme]("the real old one")
    set_hash(db_path, stored)
    r = passwd(store, "not the real old one")
    assert r.exit_code == 6 and r.error["code"] == "password_incorrect"
    assert row(db_path)["password_hash"] == stored


def test_upper_case_md5_hex_never_verifies_as_in_bitrix(store, db_path):
    # PHP's md5() is lower-case and Password::equals compares exactly (SPEC §4).
    add_user(store, "anna")
    set_hash(db_path, "Ab3dEf9H" + md5sum("Ab3dEf9H" + "legacy pass").upper())
    assert passwd(store, "legacy pass").exit_code == 6


# ---- the ordinary flow ------------------------------------------------------------------------

def test_passwd_changes_the_password_and_notifies(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com", "--lang", "de")
    r = passwd(store, GOOD_PASSWORD)
    assert r.exit_code == 0, r.stderr
    assert r.json["login"] == "anna" and r.json["password_changed"] is True and r.json["upgraded_from"] is None
    assert r.json["notice"] == {"status": "sent", "recipient": "anna@example.com"}
    stored = row(db_path)["password_hash"]
    assert verify_password(NEW, stored) and not verify_password(GOOD_PASSWORD, stored)
    messages = store("outbox", "list", "--json").json["messages"]
    assert [m["template"] for m in messages] == ["password_changed"]
    assert len(mails(db_path)) == 1
    event = events(db_path, "passwd")[-1]
    assert event["login"] == "anna" and event["actor"]


def test_wrong_current_password_is_counted(store, db_path):
    add_user(store, "anna")
    for attempt in (1, 2):
        r = passwd(store, "not my password at all")
        assert r.exit_code == 6 and r.error["code"] == "password_incorrect"
        assert row(db_path)["failed_attempts"] == attempt
    failed = events(db_path, "passwd.failed")
    assert len(failed) == 2 and failed[-1]["details"]["failed_attempts"] == 2
    assert verify_password(GOOD_PASSWORD, row(db_path)["password_hash"])
    # a success clears the counter
    assert passwd(store, GOOD_PASSWORD).exit_code == 0
    assert row(db_path)["failed_attempts"] == 0


def test_unknown_login_is_not_found(store):
    r = passwd(store, GOOD_PASSWORD, login="ghost")
    assert r.exit_code == 3 and r.error["code"] == "not_found"


def test_blocked_account_is_refused_and_not_counted(store, db_path):
    add_user(store, "anna")
    assert store("user", "block", "anna").exit_code == 0
    r = passwd(store, GOOD_PASSWORD)
    assert r.exit_code == 4 and r.error["code"] == "blocked"
    assert row(db_path)["failed_attempts"] == 0
    assert verify_password(GOOD_PASSWORD, row(db_path)["password_hash"])


def test_new_password_must_meet_the_policy_and_failure_is_not_counted(store, db_path):
    add_user(store, "anna")
    r = passwd(store, GOOD_PASSWORD, "short")
    assert r.exit_code == 6 and r.error["code"] == "password_policy"
    assert row(db_path)["failed_attempts"] == 0
    assert verify_password(GOOD_PASSWORD, row(db_path)["password_hash"])
    reused = passwd(store, GOOD_PASSWORD, GOOD_PASSWORD)  # in the history
    assert reused.exit_code == 6 and reused.error["code"] == "password_policy"


def test_social_only_account_has_no_current_password(store):
    assert store("user", "add", "vk1", "--social", "vkontakte:1", "--no-password").exit_code == 0
    r = passwd(store, "", login="vk1")
    assert r.exit_code == 6 and r.error["code"] == "password_incorrect"
    assert "reset" in r.error["hint"]


def test_passwd_clears_must_change_and_revokes_control_strings(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("reset", "anna", "--password-stdin", "--temporary", input="temporary pass 12345\n").exit_code == 0
    assert row(db_path)["must_change_password"] == 1
    assert store("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    r = passwd(store, "temporary pass 12345")
    assert r.exit_code == 0, r.stderr
    assert r.json["revoked"] == 1 and row(db_path)["must_change_password"] == 0
    states = [t["state"] for t in store("token", "list", "anna", "--json").json["control_strings"]]
    assert states == ["revoked"]


# ---- where the secrets come from ------------------------------------------------------------

def test_secrets_from_environment_variables(store, db_path):
    add_user(store, "anna")
    r = store("passwd", "anna", "--current-password-env", "OLD_PW", "--password-env", "NEW_PW", "--json",
              env={"OLD_PW": GOOD_PASSWORD, "NEW_PW": NEW})
    assert r.exit_code == 0, r.stderr
    assert verify_password(NEW, row(db_path)["password_hash"])
    missing = store("passwd", "anna", "--current-password-env", "UNSET_PW", "--password-env", "NEW_PW", "--json",
                    env={"NEW_PW": "x"})
    assert missing.exit_code == 5 and missing.error["code"] == "input_required"


def test_prompt_asks_current_new_and_confirm(store, db_path, monkeypatch):
    add_user(store, "anna")
    monkeypatch.setattr(SecretInput, "can_prompt", lambda self: True)
    differ = store("passwd", "anna", input=f"{GOOD_PASSWORD}\n" + f"{NEW}\n{NEW}x\n" * 3)  # asked 3 times
    assert differ.exit_code == 6 and "differ" in differ.stderr
    assert verify_password(GOOD_PASSWORD, row(db_path)["password_hash"])
    ok = store("passwd", "anna", input=f"{GOOD_PASSWORD}\n{NEW}\n{NEW}\n")
    assert ok.exit_code == 0, ok.stderr
    assert verify_password(NEW, row(db_path)["password_hash"])
    assert NEW not in ok.stdout and NEW not in ok.stderr  # hidden prompts echo nothing


def test_json_never_prompts(store):
    add_user(store, "anna")
    r = store("passwd", "anna", "--json")
    assert r.exit_code == 5 and r.error["code"] == "input_required"


def test_stdin_needs_two_lines(store):
    add_user(store, "anna")
    r = store("passwd", "anna", "--password-stdin", "--json", input=GOOD_PASSWORD + "\n")
    assert r.exit_code == 5 and r.error["code"] == "input_required"


def test_stdin_and_env_exclude_each_other(store):
    add_user(store, "anna")
    r = store("passwd", "anna", "--password-stdin", "--password-env", "X", input="a\nb\n")
    assert r.exit_code == 2


def test_no_secret_reaches_the_store_audit_or_output(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    wrong = passwd(store, "my wrong guess 1234")
    ok = passwd(store, GOOD_PASSWORD)
    conn = connect_db(db_path)
    dump = "\n".join(conn.iterdump())
    audit = json.dumps(events(db_path, "passwd") + events(db_path, "passwd.failed"), ensure_ascii=False)
    for secret in ("my wrong guess 1234", GOOD_PASSWORD, NEW):
        assert secret not in dump and secret not in audit
        for run in (wrong, ok):
            assert secret not in run.stdout and secret not in run.stderr


def test_passwd_as_a_real_process(store, proc, db_path):
    add_user(store, "anna")
    set_hash(db_path, LEGACY["sha512-crypt"]("imported from bitrix"))
    r = proc("passwd", "anna", "--password-stdin", input=f"imported from bitrix\n{NEW}\n")
    assert r.exit_code == 0, r.stderr
    assert "sha512-crypt" in r.stderr and r.stdout == ""
    assert verify_password(NEW, row(db_path)["password_hash"])
