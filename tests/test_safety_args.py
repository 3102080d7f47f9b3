"""Issue 13 item 9: bytes that are not UTF-8 in arguments end with exit 5 `invalid_input` (never
exit 1), through typer and through the fast path alike; `token request` keeps its uniform exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, add_user, connect_db

BAD = b"\xff\xfeanna"  # not UTF-8: Python hands it over as surrogate escapes


def run(db_path, config_path, *args: bytes | str, typer_path: bool = False, stdin: bytes = b""):
    """A real process; `typer_path` writes the globals as --db=X, which the fast path leaves to typer."""
    globals_ = ([f"--db={db_path}", f"--config={config_path}"] if typer_path
                else ["--db", str(db_path), "--config", str(config_path)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    done = subprocess.run([sys.executable, "-m", "b24recover", *globals_, *args], input=stdin, capture_output=True,
                          cwd=ROOT, env=env, timeout=60)
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def error_of(stderr: str) -> dict:
    return json.loads(stderr.strip().splitlines()[-1])["error"]


@pytest.fixture
def populated(store):
    add_user(store, "anna", "--email", "anna@example.com")
    return store


def events(db_path) -> int:
    return connect_db(db_path).execute("SELECT count(*) FROM audit_log").fetchone()[0]


COMMANDS = [
    ("user", "show", BAD, "--json"),
    ("user", "add", BAD, "--no-password", "--social", "google:1", "--json"),
    ("user", "update", "anna", "--name", BAD, "--json"),
    ("user", "block", BAD, "--json"),
    ("token", "issue", BAD, "--via", "none", "--json"),
    ("token", "list", BAD, "--json"),
    ("diagnose", BAD, "--json"),
    ("audit", "log", "--login", BAD, "--json"),
    ("link", "anna", "--email", BAD + b"@example.com", "--json"),
    ("lookup", BAD, "--by", "login", "--json"),
]


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast-path-argv", "typer-argv"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(x if isinstance(x, str) else "BAD" for x in a[:2]))
def test_undecodable_arguments_are_invalid_input_and_change_nothing(populated, db_path, config_path, args,
                                                                    typer_path):
    before = events(db_path)
    code, out, err = run(db_path, config_path, *args, typer_path=typer_path)
    assert code == 5, err
    assert error_of(err)["code"] == "invalid_input" and "UTF-8" in error_of(err)["message"]
    assert "Traceback" not in err and out == ""
    assert events(db_path) == before
    assert connect_db(db_path).execute("SELECT name FROM users WHERE login = 'anna'").fetchone() == ("",)


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast-path", "typer"])
def test_lookup_and_redeem_on_both_paths(populated, db_path, config_path, typer_path):
    for args in (("lookup", BAD, "--json"), ("lookup", BAD),
                 ("redeem", BAD, "--control-string-stdin", "--password-stdin", "--json")):
        code, out, err = run(db_path, config_path, *args, typer_path=typer_path,
                             stdin=b"0123456789abcdefghijklmnopqrstuv\nsome new passphrase 1\n")
        assert code == 5, (args, err)
        assert "not valid UTF-8" in err and "Traceback" not in err


def test_the_fast_path_really_answers_it(populated, db_path, config_path):
    # With typer unimportable only the fast path can answer: it must still say exit 5.
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    code = ("import sys; sys.modules['typer'] = None; from b24recover.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--db", str(db_path), "--config", str(config_path),
                           "lookup", BAD, "--json"], capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 5 and error_of(done.stderr.decode())["code"] == "invalid_input"


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast-path", "typer"])
def test_token_request_answers_the_same_as_for_anyone(populated, db_path, config_path, typer_path):
    bad = run(db_path, config_path, "token", "request", "--json", BAD, typer_path=typer_path)
    nobody = run(db_path, config_path, "token", "request", "--json", "nobody@example.com", typer_path=typer_path)
    assert bad[0] == nobody[0] == 0, bad[2]
    assert bad[1] == nobody[1] and json.loads(bad[1])["status"] == "accepted"
    assert bad[2] == nobody[2] == ""
    refused = connect_db(db_path).execute(
        "SELECT details FROM audit_log WHERE action = 'token.request.refused' ORDER BY id").fetchall()
    assert len(refused) == 2 and "\\udc" not in refused[0][0]


def test_in_process_surrogates_are_refused_too(populated):
    r = populated("user", "add", "bad\udcff", "--no-password", "--social", "google:2", "--json")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input"
    assert populated("lookup", "bad", "--by", "login", "--json").exit_code == 3
