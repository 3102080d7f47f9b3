"""Every error code of SPEC §2 that the implemented commands can produce, with its exit code,
as the `{"error": {"code", "message", "hint"}}` object on stderr under --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from b24recover.errors import ERROR_CODES, B24Error, ExitCode
from conftest import GOOD_PASSWORD, ROOT, Run, add_user, connect_db
from tamper import set_schema_version, write_lock_held
from tokenhelp import last_code, link_parts
from ux_pty import pty_run

NEW_PASSWORD = "a brand new passphrase 42"

# SPEC §2 "Errors", copied here on purpose: CI has no ../shared. Code -> exit code (§2 "Exit codes").
SPEC_ERRORS = {
    "not_found": 3,
    "blocked": 4, "conflict": 4, "no_email": 4, "no_phone": 4, "pending_link": 4,
    "invalid_email": 5, "invalid_phone": 5, "invalid_input": 5, "input_required": 5,
    "control_string_incorrect": 6, "control_string_superseded": 6, "control_string_expired": 6,
    "control_string_used": 6, "control_string_revoked": 6, "too_many_attempts": 6,
    "password_policy": 6, "password_mismatch": 6, "password_incorrect": 6,
    "throttled": 7,
    "store_locked": 8, "store_missing": 8, "store_too_new": 8,
    "delivery_failed": 9,
}


def test_error_table_holds_every_spec_code_with_its_exit_code():
    for code, exit_code in SPEC_ERRORS.items():
        assert code in ERROR_CODES, code
        assert ERROR_CODES[code][0] == exit_code, code
        assert ERROR_CODES[code][1], f"{code} has no hint"


def test_every_error_code_maps_to_a_documented_exit_code():
    assert {int(e) for e, _ in ERROR_CODES.values()} <= {int(c) for c in ExitCode}
    err = B24Error("not_found", "no account")
    assert err.exit_code == 3
    assert err.to_json() == {"error": {"code": "not_found", "message": "no account",
                                       "hint": ERROR_CODES["not_found"][1]}}
    with pytest.raises(ValueError):
        B24Error("no_such_code", "x")


def expect(run, code: str, exit_code: int | None = None) -> dict:
    """The run failed with this code and exit code; the JSON error is complete. Returns it."""
    exit_code = SPEC_ERRORS.get(code, exit_code)
    assert run.exit_code == exit_code, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    error = run.error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["hint"], str) and error["hint"]
    return error


def issue_none(cli, login="anna", *extra) -> str:
    r = cli("token", "issue", login, "--via", "none", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return link_parts(r.json["link"])[1]


def redeem(cli, login, secret, password=NEW_PASSWORD):
    return cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
               input=f"{secret}\n{password}\n")


# ---- 3, 4: not found and state conflicts ----------------------------------------------------

def test_not_found(store):
    expect(store("user", "show", "nobody", "--json"), "not_found")
    expect(store("user", "block", "nobody", "--json"), "not_found")
    expect(store("lookup", "nobody@example.com", "--json"), "not_found")
    expect(store("token", "issue", "nobody", "--via", "email", "--json"), "not_found")


def test_blocked(store):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("user", "block", "anna").exit_code == 0
    error = expect(store("token", "issue", "anna", "--via", "email", "--json"), "blocked")
    assert "anna" in error["message"] and "unblock" in error["hint"]


def test_conflict_names_the_other_account(store):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+7 912 345-67-89")
    add_user(store, "boris", "--email", "boris@example.com")
    cases = [
        ("user", "add", "bob", "--email", "ANNA@example.com", "--password-stdin", "--json"),
        ("user", "add", "bob", "--phone", "8 912 345 67 89", "--password-stdin", "--json"),
        ("user", "add", "ANNA", "--password-stdin", "--json"),
        ("user", "update", "boris", "--email", "anna@example.com", "--json"),
        ("user", "update", "boris", "--rename", "Anna", "--json"),
    ]
    for args in cases:
        error = expect(store(*args, input=GOOD_PASSWORD + "\n"), "conflict")
        assert "anna" in error["message"], args
        assert error["owner"] == "anna"
    assert store("user", "show", "boris", "--json").json["email"] == "boris@example.com"
    assert store("lookup", "bob", "--by", "login", "--json").exit_code == 3


def test_no_email_and_no_phone(store):
    add_user(store, "anna")
    expect(store("token", "issue", "anna", "--via", "email", "--json"), "no_email")
    expect(store("token", "issue", "anna", "--via", "sms", "--json"), "no_phone")
    assert store("user", "add", "vk_1", "--social", "vkontakte:1", "--no-password").exit_code == 0
    error = expect(store("token", "issue", "vk_1", "--via", "email", "--json"), "no_email")
    assert "link" in error["hint"]


def test_pending_link(store):
    assert store("user", "add", "vk_1", "--social", "vkontakte:1", "--no-password").exit_code == 0
    linked = store("link", "vk_1", "--phone", "+7 912 345 67 89", "--json")
    assert linked.exit_code == 0 and linked.json["state"] == "pending", linked.stderr
    expect(store("token", "issue", "vk_1", "--via", "sms", "--json"), "pending_link")


# ---- 5: invalid input -------------------------------------------------------------------------

def test_invalid_email_phone_input(store):
    pw = GOOD_PASSWORD + "\n"
    expect(store("user", "add", "x", "--email", "no-at-sign", "--password-stdin", "--json", input=pw), "invalid_email")
    expect(store("user", "add", "x", "--phone", "12345", "--password-stdin", "--json", input=pw), "invalid_phone")
    expect(store("user", "add", "x", "--name", "Ann\x00a", "--password-stdin", "--json", input=pw), "invalid_input")
    expect(store("user", "add", "x", "--lang", "klingon", "--password-stdin", "--json", input=pw), "invalid_input")
    expect(store("user", "add", "x", "--social", "nocolon", "--no-password", "--json"), "invalid_input")
    assert store("user", "list", "--json").json["accounts"] == []


def test_input_required(store, monkeypatch):
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    # No terminal and no secret source: fail at once instead of hanging on a prompt.
    expect(store("user", "add", "x", "--json"), "input_required")
    plain = store("user", "add", "x")
    assert plain.exit_code == 5 and "Traceback" not in plain.stderr
    expect(store("user", "add", "x", "--password-stdin", "--json", input=""), "input_required")
    expect(store("user", "add", "x", "--password-env", "NO_SUCH_PASSWORD_VAR", "--json"), "input_required")
    add_user(store, "anna", "--email", "anna@example.com")
    expect(store("redeem", "anna", "--control-string-stdin", "--password-stdin", "--json",
                 input="0123456789abcdefghijklmnopqrstuv\n"), "input_required")
    assert [a["login"] for a in store("user", "list", "--json").json["accounts"]] == ["anna"]


# ---- 6: refused credentials ----------------------------------------------------------------------

def test_control_string_incorrect(store):
    add_user(store, "anna", "--email", "anna@example.com")
    issue_none(store)
    expect(redeem(store, "anna", "0" * 32), "control_string_incorrect")
    expect(redeem(store, "anna", "not a control string"), "control_string_incorrect")
    # An unknown login answers the same way, so redeem cannot be used to find accounts.
    expect(redeem(store, "nobody", "0" * 32), "control_string_incorrect")


def test_control_string_superseded(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    first = issue_none(store)
    clock.advance(61)
    issue_none(store)
    error = expect(redeem(store, "anna", first), "control_string_superseded")
    assert "most recent" in error["hint"]


def test_control_string_expired(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = issue_none(store, "anna", "--ttl", "90s")
    clock.advance(91)
    expect(redeem(store, "anna", secret), "control_string_expired")


def test_control_string_used(store):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = issue_none(store)
    assert redeem(store, "anna", secret).exit_code == 0
    expect(redeem(store, "anna", secret, "yet another passphrase 7"), "control_string_used")


def test_control_string_revoked(store):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = issue_none(store)
    assert store("token", "revoke", "anna").exit_code == 0
    expect(redeem(store, "anna", secret), "control_string_revoked")


def test_too_many_attempts(store, db_path):
    add_user(store, "anna", "--phone", "+7 912 345 67 89")
    assert store("token", "issue", "anna", "--via", "sms").exit_code == 0
    code = last_code(db_path)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    expect(redeem(store, "anna", wrong), "control_string_incorrect")
    expect(redeem(store, "anna", wrong), "control_string_incorrect")
    expect(redeem(store, "anna", wrong), "too_many_attempts")
    expect(redeem(store, "anna", code), "too_many_attempts")  # the right code is dead too


def test_password_policy(store):
    error = expect(store("user", "add", "x", "--password-stdin", "--json", input="short\n"), "password_policy")
    assert "12" in error["message"]
    assert store("user", "list", "--json").json["accounts"] == []
    add_user(store, "anna", "--email", "anna@example.com")
    secret = issue_none(store)
    expect(redeem(store, "anna", secret, "anna"), "password_policy")
    assert redeem(store, "anna", secret).exit_code == 0  # a refused password did not use it up


def test_password_mismatch_at_a_terminal(store, db_path, config_path, tmp_path):
    base = ["--db", str(db_path), "--config", str(config_path)]
    mismatch = [(b"New password: ", b"first passphrase one\n"), (b"new password: ", b"second passphrase two\n")]
    code, out = pty_run([*base, "user", "add", "anna"], mismatch * 3, cwd=tmp_path)  # asked 3 times, then refused
    assert code == 6, out
    assert "differ" in out and "Traceback" not in out
    assert "first passphrase one" not in out and "second passphrase two" not in out  # not echoed
    assert store("user", "list", "--json").json["accounts"] == []
    code, out = pty_run([*base, "user", "add", "anna"],
                         [(b"New password: ", b"same passphrase twice\n"), (b"new password: ", b"same passphrase twice\n")],
                         cwd=tmp_path)
    assert code == 0, out
    from b24recover.services.passwords import verify_password

    conn = connect_db(db_path)
    stored = conn.execute("SELECT password_hash FROM users WHERE login = 'anna'").fetchone()[0]
    conn.close()
    assert verify_password("same passphrase twice", stored)


# ---- 7, 8, 9 --------------------------------------------------------------------------------------

def test_throttled(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "issue", "anna", "--via", "email").exit_code == 0
    error = expect(store("token", "issue", "anna", "--via", "email", "--json"), "throttled")
    assert error["retry_after"].endswith("Z")
    assert "--force" in error["hint"]
    clock.advance(60)
    assert store("token", "issue", "anna", "--via", "email").exit_code == 0


def test_store_errors(cli, db_path, engine, monkeypatch):
    from b24recover.store.schema import SCHEMA_VERSION

    expect(cli("user", "list", "--json"), "store_missing")  # nothing there yet: no schema
    assert cli("init").exit_code == 0
    import b24recover.store.db as db
    import b24recover.store.pg as pg

    monkeypatch.setattr(pg if engine == "postgresql" else db, "BUSY_TIMEOUT_MS", 200)
    with write_lock_held(db_path):
        error = expect(cli("user", "add", "x", "--password-stdin", "--json", input=GOOD_PASSWORD + "\n"),
                       "store_locked")
        assert "locked by another process" in error["message"]
    set_schema_version(db_path, SCHEMA_VERSION + 1)
    error = expect(cli("user", "list", "--json"), "store_too_new")
    assert f"schema version {SCHEMA_VERSION + 1}" in error["message"]
    set_schema_version(db_path, SCHEMA_VERSION - 1)
    error = expect(cli("user", "list", "--json"), "store_outdated", 8)
    assert "init" in error["hint"]


def test_an_unknown_role_is_exit_8_naming_host_and_cause(pg_server, config_path):
    """PostgreSQL refusing the login (here trust auth: a role it does not know) is exit 8, no traceback."""
    host, port = pg_server.admin.params["host"], pg_server.admin.params.get("port", 5432)
    url = f"postgresql://b24recover_no_such_role@{host}:{port}/{pg_server.dbname}"
    r = subprocess.run([sys.executable, "-m", "b24recover", "--db", url, "--config", str(config_path),
                        "user", "list", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    error = expect(Run(r.returncode, r.stdout, r.stderr), "store_missing")
    assert host in error["message"] and 'role "b24recover_no_such_role" does not exist' in error["message"]


def test_delivery_failed_keeps_the_message_and_the_control_string(store, config_path):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('gateway down'); sys.exit(3)"]
    config_path.write_text(
        'default_country = "RU"\n[hashing]\nbcrypt_rounds = 4\n'
        f"[sms]\ntransport = \"command\"\ncommand = {json.dumps(failing)}\n",
        encoding="utf-8",
    )
    add_user(store, "anna", "--phone", "+7 912 345 67 89")
    error = expect(store("token", "issue", "anna", "--via", "sms", "--json"), "delivery_failed")
    assert "gateway down" in error["message"]
    failed = store("outbox", "list", "--status", "failed", "--json").json["messages"]
    assert [m["recipient"] for m in failed] == ["+79123456789"]
    assert [t["state"] for t in store("token", "list", "anna", "--json").json["control_strings"]] == ["active"]
    expect(store("outbox", "send", "--json"), "delivery_failed")


def test_init_without_a_schema_to_create_in_is_store_missing(pg_server, config_path, monkeypatch):
    """PostgreSQL: a search_path naming no existing schema; init says what to create, not "run init"."""
    monkeypatch.setenv("PGOPTIONS", "-c search_path=b24recover_no_such_schema")
    r = subprocess.run([sys.executable, "-m", "b24recover", "--db", pg_server.url, "--config", str(config_path),
                        "init", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    error = expect(Run(r.returncode, r.stdout, r.stderr), "store_missing")
    assert "no schema has been selected to create in" in error["message"] and "CREATE SCHEMA" in error["hint"]
    assert not list(config_path.parent.glob("b24recover-*.key"))  # nothing made before the store


# ---- 2: usage --------------------------------------------------------------------------------------

def test_usage_errors(store):
    r = store("user", "add", "x", "--bogus")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    expect(store("user", "add", "x", "--no-password", "--json"), "usage", 2)
    expect(store("user", "update", "x", "--email", "a@example.com", "--clear-email", "--json"), "usage", 2)
    expect(store("user", "update", "x", "--phone", "+7 912 345 67 89", "--clear-phone", "--json"), "usage", 2)
    expect(store("token", "issue", "x", "--via", "pigeon", "--json"), "usage", 2)
    expect(store("token", "issue", "x", "--via", "email", "--ttl", "5 parsecs", "--json"), "usage", 2)
    assert store("lookup", "x", "--by", "telepathy").exit_code == 2
    assert store("user", "list", "--json").json["accounts"] == []
