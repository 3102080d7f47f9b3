"""Output at a terminal and piped: stored values never act on the terminal, listings take
--limit/--format/--no-headers and say when they were cut, tables never break an email, login or
timestamp and turn into blocks on a narrow terminal; usage errors are JSON with --json."""

from __future__ import annotations

import json
import re

import pytest

from conftest import add_user, connect_db
from ux_pty import pty_run

MARKUP = "[link=https://evil.example/reset]Click to reset[/link]"
# An OSC 8 hyperlink, a CSI colour, a C1 CSI (U+009B) and a right-to-left override.
HOSTILE_LAST = "\x1b]8;;https://evil.example\x1b\\here\x1b]8;;\x1b\\ \x1b[31mred \x9b32m \u202eesrever"
OUR_SGR = re.compile(r"\x1b\[(?:0|1|31)m")


@pytest.fixture
def hostile(store, db_path):
    """An account whose name came into the store from elsewhere (an older version, a portal)."""
    add_user(store, "mallory", "--email", "mallory.very.long.address@example-company.com")
    conn = connect_db(db_path)
    conn.execute("UPDATE users SET name = ?, last_name = ? WHERE login = 'mallory'", (MARKUP, HOSTILE_LAST))
    conn.commit()
    conn.close()
    return store


def _no_active_sequences(text: str) -> None:
    rest = OUR_SGR.sub("", text)
    assert "\x1b" not in rest and "\x9b" not in rest and "\u202e" not in rest, repr(rest)
    assert "\x1b]8" not in text


@pytest.mark.parametrize("argv", [["user", "list"], ["lookup", "mallory"], ["user", "show", "mallory"],
                                  ["lookup", "Click", "--by", "name"]])
def test_stored_values_never_act_on_a_terminal(hostile, db_path, config_path, tmp_path, argv):
    base = ["--db", str(db_path), "--config", str(config_path)]
    code, out = pty_run([*base, *argv], cwd=tmp_path, cols=400)
    assert code == 0, out
    _no_active_sequences(out)
    assert MARKUP in out  # shown literally, not as a link
    assert "\\x1b]8;;https://evil.example" in out and "\\u202e" in out and "\\x9b" in out


@pytest.mark.parametrize("argv", [["user", "list"], ["lookup", "mallory"], ["user", "show", "mallory"],
                                  ["user", "list", "--format", "csv"], ["user", "list", "--json"]])
def test_stored_values_never_act_piped(hostile, proc, argv):
    done = proc(*argv)
    assert done.exit_code == 0, done.stderr
    _no_active_sequences(done.stdout)
    assert "\x1b" not in done.stdout
    if "--json" in argv:  # still the exact value for scripts
        account = json.loads(done.stdout)["accounts"][0]
        assert account["name"] == MARKUP and account["last_name"] == HOSTILE_LAST


def test_no_color_and_colour_for_blocked(store, db_path, config_path, tmp_path):
    add_user(store, "anna", "--email", "anna@example.com")
    store("user", "block", "anna")
    base = ["--db", str(db_path), "--config", str(config_path)]
    code, out = pty_run([*base, "user", "list"], cwd=tmp_path)
    assert code == 0 and "\x1b[31mblocked" in out, out
    code, out = pty_run([*base, "user", "list"], cwd=tmp_path, env={"NO_COLOR": "1"})
    assert code == 0 and "blocked" in out and "\x1b[" not in out, out


def _many(store, db_path, n):
    add_user(store, "seed", "--email", "seed@example.com")
    conn = connect_db(db_path, rows_by_name=True)
    seed = dict(conn.execute("SELECT * FROM users WHERE login = 'seed'").fetchone())
    del seed["id"]  # the store numbers each copy
    for i in range(n):
        values = dict(seed, login=f"user{i:03d}", login_key=f"user{i:03d}",
                      email=f"user{i:03d}@example.com", email_key=f"user{i:03d}@example.com", name="Common")
        conn.execute(f"INSERT INTO users ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     list(values.values()))
    conn.commit()
    conn.close()


def test_limit_more_and_formats(store, db_path, proc):
    _many(store, db_path, 30)
    body = proc("user", "list", "--limit", "10", "--json").json
    assert len(body["accounts"]) == 10 and body["more"] is True
    body = proc("user", "list", "--limit", "0", "--json").json
    assert len(body["accounts"]) == 31 and "more" not in body
    done = proc("user", "list", "--limit", "5", "--format", "csv", "--no-headers")
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[0] == "seed,,,seed@example.com,,active,yes,," and lines[1].startswith("user000,")
    assert "26 more accounts not shown" in done.stderr and "--limit" in done.stderr
    tsv = proc("user", "list", "--limit", "3", "-o", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[0] == "Login" and len(tsv) == 4
    by_name = proc("lookup", "Common", "--by", "name", "--limit", "7", "--json").json
    assert len(by_name["matches"]) == 7 and by_name["more"] is True
    assert len(proc("lookup", "Common", "--by", "name", "--limit", "0", "--json").json["matches"]) == 30
    assert proc("lookup", "Common", "--by", "name", "--format", "yaml").exit_code == 2


def test_default_lookup_limit_is_50_and_says_so(store, db_path, proc):
    _many(store, db_path, 60)
    body = proc("lookup", "Common", "--by", "name", "--json").json
    assert len(body["matches"]) == 50 and body["more"] is True


def test_tables_never_break_emails_and_become_blocks_when_narrow(hostile, db_path, config_path, tmp_path):
    base = ["--db", str(db_path), "--config", str(config_path)]
    email = "mallory.very.long.address@example-company.com"
    code, out = pty_run([*base, "user", "list"], cwd=tmp_path, cols=120, env={"NO_COLOR": "1"})
    assert code == 0 and email in out, out
    assert all(len(line) <= 120 for line in out.splitlines())
    code, out = pty_run([*base, "user", "list"], cwd=tmp_path, cols=40, env={"NO_COLOR": "1"})
    assert code == 0, out
    assert re.search(r"^Email:\s+" + re.escape(email), out, re.M), out  # one record per block
    assert "Login:" in out and "mallory" in out


def test_a_long_listing_goes_through_the_pager(store, db_path, config_path, tmp_path):
    _many(store, db_path, 60)
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > {tmp_path / 'paged.txt'}\n")
    pager.chmod(0o755)
    base = ["--db", str(db_path), "--config", str(config_path)]
    code, out = pty_run([*base, "user", "list"], cwd=tmp_path, rows=20, env={"PAGER": str(pager)})
    assert code == 0, out
    paged = (tmp_path / "paged.txt").read_text()
    assert "user059" in paged and "user059" not in out
    code, out = pty_run([*base, "user", "list", "--limit", "3"], cwd=tmp_path, rows=20, env={"PAGER": str(pager)})
    assert "user001" in out and "58 more accounts not shown" in out  # one screen: no pager


@pytest.mark.parametrize("argv", [["token", "issue", "qa1", "--json"], ["user", "list", "--bogus", "--json"],
                                  ["nosuch", "--json"], ["lookup", "--json"], ["user", "list", "--limit", "x", "--json"]])
def test_usage_errors_are_json_with_json(store, proc, argv):
    done = proc(*argv)
    assert done.exit_code == 2, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "usage" and error["message"] and error["hint"]
    plain = proc(*[a for a in argv if a != "--json"])
    assert plain.exit_code == 2 and not plain.stderr.lstrip().startswith("{")


def test_version_short_flag(proc):
    done = proc("-V")
    assert done.exit_code == 0 and done.stdout.startswith("b24recover ")


@pytest.mark.parametrize("extra", [["--limit", "2", "--format", "csv", "--no-headers"], ["-o", "tsv"],
                                   ["--limit", "1", "--json"], ["--limit", "x"], ["--format", "yaml", "--json"]])
def test_lookup_listing_options_answer_the_same_with_and_without_typer(store, db_path, config_path, extra):
    """`--db PATH` takes the typer-free fast path, `--db=PATH` goes through typer."""
    import os
    import subprocess
    import sys

    _many(store, db_path, 5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    answers = []
    for globals_ in (["--db", str(db_path), "--config", str(config_path)],
                     [f"--db={db_path}", f"--config={config_path}"]):
        done = subprocess.run([sys.executable, "-m", "b24recover", *globals_, "lookup", "Common", "--by", "name",
                               *extra], capture_output=True, env=env)
        answers.append((done.returncode, done.stdout, done.stderr))
    assert answers[0] == answers[1]
    assert answers[0][0] == (2 if "x" in extra or "yaml" in extra else 0)
