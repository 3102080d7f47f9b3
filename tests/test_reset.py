"""`reset LOGIN`: administrator reset. New password from stdin, env, a prompt asked twice, or
--generate (printed once on stdout, nowhere else); --temporary; notices; audit with actor and reason."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import GOOD_PASSWORD, add_user, connect_db
from b24recover.cli.runtime import SecretInput
from b24recover.config import PolicySettings, Settings
from b24recover.services import admin
from b24recover.services.context import Ctx
from b24recover.services.passwords import verify_password
from b24recover.services.policy import violations
from tokenhelp import beside_store, outbox_dir

NEW = "the admin chose this one 77"


def row(db_path, login="anna"):
    conn = connect_db(db_path)
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()


def events(db_path, action):
    conn = connect_db(db_path)
    rows = conn.execute("SELECT actor, login, details FROM audit_log WHERE action = ? ORDER BY id", (action,))
    return [{"actor": a, "login": login, "details": json.loads(d)} for a, login, d in rows]


def everything_stored(db_path) -> str:
    """The whole database and every outbox file, as text: where a secret must never be."""
    conn = connect_db(db_path)
    try:
        texts = ["\n".join(conn.iterdump())]
    finally:
        conn.close()  # deterministically: a connection left to the GC removed -shm mid-listing
    for path in sorted(outbox_dir(db_path).rglob("*")):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_reset_from_stdin_sets_the_password_and_is_audited(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("--actor", "helpdesk-olga", "reset", "anna", "--password-stdin", "--reason", "ticket 4711", "--json",
              input=NEW + "\n")
    assert r.exit_code == 0, r.stderr
    assert r.json["login"] == "anna" and r.json["must_change_password"] is False
    assert "password" not in r.json
    assert r.json["notice"] == {"status": "sent", "recipient": "anna@example.com"}
    stored = row(db_path)["password_hash"]
    assert verify_password(NEW, stored) and not verify_password(GOOD_PASSWORD, stored)
    event = events(db_path, "reset")[-1]
    assert event["actor"] == "helpdesk-olga" and event["login"] == "anna"
    assert event["details"]["reason"] == "ticket 4711" and event["details"]["generated"] is False


def test_reset_revokes_active_control_strings(store):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    r = store("reset", "anna", "--password-stdin", "--json", input=NEW + "\n")
    assert r.json["revoked"] == 1
    states = [t["state"] for t in store("token", "list", "anna", "--json").json["control_strings"]]
    assert states == ["revoked"]


def test_no_notify_sends_nothing(store):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("reset", "anna", "--password-stdin", "--no-notify", "--json", input=NEW + "\n")
    assert r.exit_code == 0 and r.json["notice"] is None
    assert store("outbox", "list", "--json").json["messages"] == []


def test_notice_goes_by_sms_when_there_is_only_a_phone(store, db_path):
    add_user(store, "petr", "--phone", "+7 912 345-67-89")
    r = store("reset", "petr", "--password-stdin", "--json", input=NEW + "\n")
    assert r.json["notice"] == {"status": "sent", "recipient": "+79123456789"}
    assert len(list((outbox_dir(db_path) / "sms").iterdir())) == 1


def test_temporary_sets_must_change_password(store, db_path):
    add_user(store, "anna")
    r = store("reset", "anna", "--password-stdin", "--temporary", "--json", input=NEW + "\n")
    assert r.json["must_change_password"] is True
    assert store("user", "show", "anna", "--json").json["must_change_password"] is True
    assert row(db_path)["must_change_password"] == 1


def test_generate_prints_the_password_once_and_nowhere_else(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("reset", "anna", "--generate", "--temporary", "--reason", "forgot everything", "--json")
    assert r.exit_code == 0, r.stderr
    body = r.json
    assert body["login"] == "anna" and body["must_change_password"] is True
    password = body["password"]
    assert len(password) >= 20
    assert not violations(PolicySettings(), password, login="anna", email="anna@example.com")
    assert verify_password(password, row(db_path)["password_hash"])
    assert r.stdout.count(password) == 1 and password not in r.stderr
    assert password not in everything_stored(db_path)
    event = events(db_path, "reset")[-1]
    assert event["details"]["generated"] is True and event["details"]["temporary"] is True


def test_generate_without_json_prints_only_the_password_on_stdout(store, db_path):
    add_user(store, "anna")
    r = store("reset", "anna", "--generate")
    assert r.exit_code == 0, r.stderr
    password = r.stdout.strip()
    assert r.stdout == password + "\n" and password not in r.stderr
    assert verify_password(password, row(db_path)["password_hash"])


def test_two_generated_passwords_differ(store):
    add_user(store, "anna")
    first = store("reset", "anna", "--generate", "--json").json["password"]
    second = store("reset", "anna", "--generate", "--json").json["password"]
    assert first != second


POLICIES = {
    "default": PolicySettings(),
    "low": PolicySettings(preset="low"),
    "middle": PolicySettings(preset="middle"),
    "high": PolicySettings(preset="high"),
    "every class, 24 long": PolicySettings(PASSWORD_LENGTH=24, PASSWORD_UPPERCASE=True, PASSWORD_LOWERCASE=True,
                                           PASSWORD_DIGITS=True, PASSWORD_PUNCTUATION=True),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_generated_passwords_pass_every_preset(name, tmp_path):
    policy = POLICIES[name]
    ctx = Ctx(store=None, settings=Settings(policy=policy, db_path=tmp_path / "x.db"), _key=b"k" * 32)
    user = {"id": 1, "login": "abc", "name": "Anna", "last_name": "Ivanova", "email": "anna@example.com"}
    for _ in range(200):
        password = admin.generate_password(ctx, user, history=[])
        assert not violations(policy, password, login="abc", name="Anna", last_name="Ivanova",
                              email="anna@example.com")
        assert len(password) >= max(20, policy.PASSWORD_LENGTH if not policy.preset else 0)
        assert not set(password) & set("0O1lI,\"'\\ $`")


def test_generated_password_is_drawn_again_when_the_policy_refuses_it(tmp_path, monkeypatch):
    draws = iter(["Xabc9!" + "a" * 14, "Good2#Pass" + "w" * 10])  # the first contains the login
    monkeypatch.setattr(admin, "_draw", lambda length: next(draws))
    ctx = Ctx(store=None, settings=Settings(db_path=tmp_path / "x.db"), _key=b"k" * 32)
    user = {"id": 1, "login": "abc", "name": "", "last_name": "", "email": None}
    assert admin.generate_password(ctx, user, history=[]) == "Good2#Pass" + "w" * 10


def test_generated_length_follows_a_longer_policy(store, db_path, config_path):
    add_user(store, "anna", password="a long enough passphrase, twenty-eight")
    config_path.write_text(config_path.read_text() + "[policy]\nPASSWORD_LENGTH = 28\nPASSWORD_PUNCTUATION = true\n")
    r = store("reset", "anna", "--generate", "--json")
    assert r.exit_code == 0, r.stderr
    assert len(r.json["password"]) == 28


def test_prompt_asks_twice(store, db_path, monkeypatch):
    add_user(store, "anna")
    monkeypatch.setattr(SecretInput, "can_prompt", lambda self: True)
    differ = store("reset", "anna", input=f"{NEW}\n{NEW}!\n" * 3)  # asked again twice, then refused
    assert differ.exit_code == 6 and "differ" in differ.stderr
    assert verify_password(GOOD_PASSWORD, row(db_path)["password_hash"])
    ok = store("reset", "anna", input=f"{NEW}\n{NEW}\n")
    assert ok.exit_code == 0, ok.stderr
    assert verify_password(NEW, row(db_path)["password_hash"])


def test_password_from_an_environment_variable(store, db_path):
    add_user(store, "anna")
    r = store("reset", "anna", "--password-env", "ADMIN_PW", "--json", env={"ADMIN_PW": NEW})
    assert r.exit_code == 0, r.stderr
    assert verify_password(NEW, row(db_path)["password_hash"])


def test_json_without_a_secret_source_does_not_prompt(store):
    add_user(store, "anna")
    r = store("reset", "anna", "--json")
    assert r.exit_code == 5 and r.error["code"] == "input_required"


@pytest.mark.parametrize("flags", [("--generate", "--password-stdin"), ("--generate", "--password-env", "X"),
                                   ("--password-stdin", "--password-env", "X")])
def test_exclusive_sources_are_a_usage_error(store, flags):
    add_user(store, "anna")
    assert store("reset", "anna", *flags, input=NEW + "\n").exit_code == 2


def test_unknown_login(store):
    r = store("reset", "ghost", "--generate", "--json")
    assert r.exit_code == 3 and r.error["code"] == "not_found"


def test_blocked_account_may_be_reset_and_stays_blocked(store, db_path):
    add_user(store, "anna")
    store("user", "block", "anna")
    r = store("reset", "anna", "--password-stdin", "--json", input=NEW + "\n")
    assert r.exit_code == 0, r.stderr
    assert verify_password(NEW, row(db_path)["password_hash"]) and row(db_path)["blocked"] == 1
    assert events(db_path, "reset")[-1]["details"]["blocked"] is True


def test_policy_refusal_changes_nothing(store, db_path):
    add_user(store, "anna")
    before = row(db_path)["password_hash"]
    r = store("reset", "anna", "--password-stdin", "--json", input="anna2024anna\n")
    assert r.exit_code == 6 and r.error["code"] == "password_policy"
    assert row(db_path)["password_hash"] == before and events(db_path, "reset") == []


def test_social_only_account_gets_its_first_password(store, db_path):
    assert store("user", "add", "vk7", "--social", "vkontakte:7", "--no-password").exit_code == 0
    r = store("reset", "vk7", "--password-stdin", "--json", input=NEW + "\n")
    assert r.exit_code == 0 and r.json["notice"] is None  # no address to notify
    assert store("user", "show", "vk7", "--json").json["has_password"] is True


def test_reset_as_a_real_process_shows_the_password_only_on_stdout(store, proc, engine, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    r = proc("reset", "anna", "--generate", "--temporary")
    assert r.exit_code == 0, r.stderr
    password = r.stdout.strip()
    assert len(password) >= 20 and password not in r.stderr
    assert verify_password(password, row(db_path)["password_hash"])
    assert password not in everything_stored(db_path)
    # not in any file at all: database, WAL (SQLite), key file, config, outbox
    files = [p for p in beside_store(db_path, "").parent.rglob("*") if p.is_file()]
    assert any(p.suffix == ".key" for p in files)
    if engine == "sqlite":
        assert any(p.name.endswith("-wal") or p.suffix == ".db" for p in files)
    assert not any(password.encode() in p.read_bytes() for p in files)
