"""Bad input at the command line never gives a traceback and changes nothing; secrets never
come from argv and never leave in output; long passwords in any script are used whole."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import typer.main

from b24recover import __version__
from b24recover.cli.app import app
from b24recover.services.passwords import verify_password
from conftest import GOOD_PASSWORD, ROOT, add_user, connect_db

TABLES = ("users", "social_identities", "pending_addresses", "control_strings", "outbox", "password_history",
          "audit_log")


def snapshot(db_path) -> dict:
    conn = connect_db(db_path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        conn.close()


def stored_hash(db_path, login: str) -> str:
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT password_hash FROM users WHERE login = ?", (login,)).fetchone()[0]
    finally:
        conn.close()


def assert_clean_failure(run, exit_codes=(5,)) -> None:
    assert run.exit_code in exit_codes, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert run.stderr.strip(), "a failure must say why"


# ---- NUL bytes and huge values ---------------------------------------------------------------------

NUL_CASES = [
    ("user", "add", "an\x00na", "--password-stdin"),
    ("user", "add", "anna2", "--name", "An\x00na", "--password-stdin"),
    ("user", "add", "anna2", "--last-name", "Iva\x00nova", "--password-stdin"),
    ("user", "add", "anna2", "--email", "anna2@exa\x00mple.com", "--password-stdin"),
    ("user", "add", "anna2", "--phone", "+7 912\x00345 67 00", "--password-stdin"),
    ("user", "add", "anna2", "--social", "google:12\x0034", "--no-password"),
    ("user", "update", "anna", "--name", "An\x00na"),
    ("user", "update", "anna", "--email", "anna@exa\x00mple.com"),
    ("user", "update", "anna", "--phone", "+7 912\x00345 67 00"),
    ("user", "update", "anna", "--rename", "an\x00na"),
    ("lookup", "an\x00na"),
    ("lookup", "+7 912\x00345 67 89", "--by", "phone"),
]


@pytest.mark.parametrize("args", NUL_CASES, ids=lambda a: " ".join(a[:3]).replace("\x00", "\\0"))
def test_nul_bytes_in_arguments(store, db_path, args):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+7 912 345 67 89")
    before = snapshot(db_path)
    r = store(*args, "--json", input=GOOD_PASSWORD + "\n")
    assert_clean_failure(r)
    assert r.error["code"] == "invalid_input"
    assert snapshot(db_path) == before


def test_nul_byte_in_a_login_to_show_is_simply_not_found(store):
    add_user(store, "anna")
    r = store("user", "show", "an\x00na", "--json")
    assert_clean_failure(r, (3,))


def test_nul_byte_in_a_password_is_refused(store, db_path):
    before = snapshot(db_path)
    r = store("user", "add", "anna", "--password-stdin", "--json", input="correct horse\x00battery staple\n")
    assert_clean_failure(r, (6,))  # the policy refuses it (not_text); it is never cut at the NUL
    assert r.error["code"] == "password_policy"
    assert snapshot(db_path) == before


HUGE = 100 * 1024
HUGE_CASES = [
    ("user", "add", "a" * HUGE, "--password-stdin"),
    ("user", "add", "anna2", "--name", "N" * HUGE, "--password-stdin"),
    ("user", "add", "anna2", "--email", "a" * HUGE + "@example.com", "--password-stdin"),
    ("user", "add", "anna2", "--phone", "9" * HUGE, "--password-stdin"),
    ("user", "update", "anna", "--name", "Я" * (HUGE // 2)),  # 100 KB of UTF-8
    ("lookup", "x" * HUGE),
    ("lookup", "a" * HUGE + "@example.com"),
]


def test_100_kb_arguments(proc, db_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    before = snapshot(db_path)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda args: proc(*args, "--json", input=GOOD_PASSWORD + "\n"), HUGE_CASES))
    for args, r in zip(HUGE_CASES, runs):
        assert_clean_failure(r)
        assert r.error["code"] in ("invalid_input", "invalid_email", "invalid_phone"), (args[:2], r.error)
        assert len(r.stderr) < 4096, "the error must not echo 100 KB back"
    assert snapshot(db_path) == before
    # The portal's form answers the same whatever was typed, and records nothing it should not.
    r = proc("token", "request", "x" * HUGE, "--json")
    assert r.exit_code == 0 and "Traceback" not in r.stderr
    assert snapshot(db_path)["users"] == before["users"]


# ---- secrets on stdin --------------------------------------------------------------------------------

def test_invalid_utf8_on_stdin(proc, db_path):
    assert proc("init").exit_code == 0
    before = snapshot(db_path)
    r = proc("user", "add", "anna", "--password-stdin", "--json", input=b"\xff\xfe correct horse \xc3\x28 staple\n")
    assert_clean_failure(r)
    assert r.error["code"] == "invalid_input"
    assert snapshot(db_path) == before


def test_empty_stdin(store, db_path):
    before = snapshot(db_path)
    for data in ("", b""):
        r = store("user", "add", "anna", "--password-stdin", "--json", input=data)
        assert_clean_failure(r)
        assert r.error["code"] == "input_required"
    assert snapshot(db_path) == before


def test_oversized_stdin(store, db_path):
    before = snapshot(db_path)
    r = store("user", "add", "anna", "--password-stdin", "--json", input="p" * 200_000 + "\n")
    assert_clean_failure(r, (5,))
    assert r.error["code"] == "invalid_input"
    assert snapshot(db_path) == before


CYRILLIC_64 = "ПустьВсегдаБудетСолнцеПустьВсегдаБудетНебоПустьВсегдаБудетМамаПу"


def test_64_cyrillic_characters_are_used_whole(store, db_path):
    assert len(CYRILLIC_64) == 64 and len(CYRILLIC_64.encode("utf-8")) == 128
    add_user(store, "anna", password=CYRILLIC_64)
    stored = stored_hash(db_path, "anna")
    assert verify_password(CYRILLIC_64, stored)
    same_first_72_bytes = CYRILLIC_64[:36] + "ИначеГоворяСовсемДругаяФраза"
    assert len(same_first_72_bytes) == 64
    assert same_first_72_bytes.encode()[:72] == CYRILLIC_64.encode()[:72]
    assert not verify_password(same_first_72_bytes, stored)
    assert not verify_password(CYRILLIC_64[:36], stored)  # nor the 72-byte prefix alone


def test_a_256_character_password_in_any_script(store, db_path):
    password = ("Ελληνικά 日本語 עברית العربية हिन्दी " * 10)[:256]
    add_user(store, "anna", password=password)
    stored = stored_hash(db_path, "anna")
    assert verify_password(password, stored)
    assert not verify_password(password[:-1] + "x", stored)


# ---- version, help, no secrets on argv ------------------------------------------------------------

def test_version(proc):
    r = proc("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"b24recover {__version__}"


def _commands(command, path=()):
    subs = getattr(command, "commands", None)
    if subs:
        yield path, command, True
        for name, sub in subs.items():
            yield from _commands(sub, path + (name,))
    else:
        yield path, command, False


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_listed():
    leaves = {" ".join(p) for p, _, group in COMMANDS if not group}
    assert {"init", "lookup", "redeem", "link", "diagnose", "user add", "user show", "user list",
            "user update", "user block", "user unblock", "token request", "token issue", "token list",
            "token check", "token revoke", "outbox list", "outbox send", "policy show",
            "policy check"} <= leaves


@pytest.mark.parametrize("path,group", [(p, g) for p, _, g in COMMANDS],
                         ids=[" ".join(p) or "root" for p, _, _ in COMMANDS])
def test_help_of_every_command(cli, path, group):
    r = cli(*path, "--help")
    assert r.exit_code == 0, r.stderr
    assert "Usage:" in r.stdout
    if not group or not path:
        assert re.search(r"\bExamples?\b", r.stdout), f"{' '.join(path)} --help shows no example"
        assert "b24recover " in r.stdout.split("Example", 1)[1]


SECRET_OPTIONS = {"--password", "--new-password", "--current-password", "--control-string", "--checkword",
                  "--code", "--secret", "--token"}


def test_no_option_takes_a_secret_on_argv():
    for path, command, _ in COMMANDS:
        names = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert not names & SECRET_OPTIONS, (path, names & SECRET_OPTIONS)


def test_password_on_argv_is_a_usage_error(store, db_path):
    before = snapshot(db_path)
    r = store("user", "add", "anna", "--password", "correct horse battery staple")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert snapshot(db_path) == before


# ---- nothing secret in any output ------------------------------------------------------------------

def test_outputs_never_show_a_password_or_hash(store, db_path):
    password = "Фиолетовый жираф пьёт чай 42"
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+7 912 345 67 89", "--name", "Anna",
             password=password)
    add_user(store, "boris", "--email", "boris@example.com", password=GOOD_PASSWORD)
    assert store("user", "update", "anna", "--last-name", "Ivanova").exit_code == 0
    hashes = [stored_hash(db_path, "anna"), stored_hash(db_path, "boris")]
    runs = [store("user", "add", "vera", "--password-stdin", "--json", input=password + "\n")]
    for fmt in ((), ("--json",)):
        runs += [store("user", "show", "anna", *fmt), store("user", "list", *fmt),
                 store("lookup", "anna@example.com", *fmt), store("lookup", "Ivanova", "--by", "name", *fmt),
                 store("lookup", "+79123456789", *fmt), store("user", "block", "boris", *fmt),
                 store("user", "unblock", "boris", *fmt)]
    for r in runs:
        assert r.exit_code == 0, r.stderr
        text = r.stdout + r.stderr
        for needle in (password, GOOD_PASSWORD, *hashes, "$bcrypt", "$2b$", "$2a$", "$6$"):
            assert needle not in text, needle
    shown = store("user", "show", "anna", "--json").json
    assert shown["has_password"] is True and "password_hash" not in shown


# ---- an unexpected error ---------------------------------------------------------------------------

FAULTY = """
import sys
import b24recover.services.lookup as lookup_service

def fault(*args, **kwargs):
    raise RuntimeError("simulated fault in a service")

lookup_service.lookup = fault
from b24recover.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _run_faulty(db_path, config_path, debug: bool):
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    if debug:
        env["B24RECOVER_DEBUG"] = "1"
    done = subprocess.run([sys.executable, "-c", FAULTY, "--db", str(db_path), "--config", str(config_path),
                           "lookup", "anna", "--json"], capture_output=True, env=env, cwd=ROOT, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_unexpected_error_is_one_line_without_traceback(proc, db_path, config_path):
    # A bug is injected into the lookup service: what the operator sees is what matters here.
    assert proc("init").exit_code == 0
    code, out, err = _run_faulty(db_path, config_path, debug=False)
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "unexpected error" in err and "simulated fault" in err
    assert "Traceback" not in err and "B24RECOVER_DEBUG=1" in err
    code, _, err = _run_faulty(db_path, config_path, debug=True)
    assert code == 1
    assert "Traceback" in err and "simulated fault" in err
