"""At most one active control string per account, always (SPEC §5) — held by the store itself,
not only by the service that supersedes: a second active row cannot even be inserted, two
issuers released together as processes leave exactly one active, and a new control string
supersedes the old one as the right behaviour (exit 0, the old one `superseded`)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from barrier import release_together
from conftest import ROOT, add_user, connect_db
from tokenhelp import link_parts

NEW_PASSWORD = "a brand new passphrase 42"

# The CLI's own main(), with each write transaction's "asked for the lock" and "committed"
# moments recorded; the first write waits at a barrier that releases both children at once, so
# they ask for the lock together whatever opening the store cost (a PostgreSQL connection takes
# longer, and varies more, than the write itself).
DRIVER = """
import json, sys, time
from contextlib import contextmanager
from pathlib import Path
from b24recover.__main__ import main
from b24recover.cli import app, tokens  # import everything before the barrier
from b24recover.store import db, pg
log, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
def recorded(real_write):
    @contextmanager
    def write(self):
        if not ready.exists():
            ready.touch()
            while not go.exists():
                time.sleep(0.0005)
        asked = time.time()
        with real_write(self) as conn:
            yield conn
        with log.open("a") as f:
            f.write(json.dumps({"asked": asked, "done": time.time()}) + "\\n")
    return write
db.Store.write, pg.Store.write = recorded(db.Store.write), recorded(pg.Store.write)  # whichever engine
sys.exit(main(sys.argv[4:]))
"""


def user_id(db_path, login="anna") -> int:
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT id FROM users WHERE login = ?", (login,)).fetchone()[0]
    finally:
        conn.close()


def test_the_store_refuses_a_second_active_control_string(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "issue", "anna", "--via", "none").exit_code == 0
    conn = connect_db(db_path, autocommit=True)
    try:
        with pytest.raises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
            conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, created_at, expires_at)"
                         " VALUES (?, 'link', 'none', 'x', 1, 2)", (user_id(db_path),))
        # ended ones may be many
        conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                     " expires_at) VALUES (?, 'link', 'none', 'y', 'superseded', 1, 2)", (user_id(db_path),))
        assert conn.execute("SELECT count(*) FROM control_strings WHERE state = 'active'").fetchone()[0] == 1
    finally:
        conn.close()


def test_a_new_control_string_supersedes_the_old_one(store):
    add_user(store, "anna", "--email", "anna@example.com")
    first = store("token", "issue", "anna", "--via", "none", "--json")
    second = store("token", "issue", "anna", "--via", "none", "--force", "--json")
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    states = {t["id"]: t["state"] for t in store("token", "list", "anna", "--json").json["control_strings"]}
    assert states == {first.json["id"]: "superseded", second.json["id"]: "active"}
    old, new = (link_parts(r.json["link"])[1] for r in (first, second))
    r = store("redeem", "anna", "--control-string-stdin", "--password-stdin", "--json",
              input=f"{old}\n{NEW_PASSWORD}\n")
    assert r.exit_code == 6 and r.error["code"] == "control_string_superseded"
    r = store("redeem", "anna", "--control-string-stdin", "--password-stdin", "--json",
              input=f"{new}\n{NEW_PASSWORD}\n")
    assert r.exit_code == 0, r.stderr


def issue_together(db_path, config_path, work: Path, tag: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    go = work / f"go-{tag}"
    children = []
    for n in range(2):
        log, ready = work / f"writes-{tag}-{n}.jsonl", work / f"ready-{tag}-{n}"
        argv = [sys.executable, "-c", DRIVER, str(log), str(ready), str(go), "--db", str(db_path),
                "--config", str(config_path), "token", "issue", "anna", "--via", "none", "--force", "--json"]
        children.append((subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, cwd=ROOT, env=env), log, ready))
    release_together(children, go)
    results = []
    for child, log, _ in children:
        out, err = child.communicate(timeout=120)
        writes = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        results.append({"exit": child.returncode, "stdout": out.decode(), "stderr": err.decode(), "writes": writes})
    return results


def test_two_issuers_at_once_leave_exactly_one_active(proc, db_path, config_path, tmp_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    overlapped, tries = 0, 0
    while overlapped < 3:
        assert tries < 15, f"only {overlapped} of {tries} rounds overlapped: the test no longer races"
        tries += 1
        results = issue_together(db_path, config_path, tmp_path, str(tries))
        assert [r["exit"] for r in results] == [0, 0], [r["stderr"] for r in results]
        ids = [json.loads(r["stdout"])["id"] for r in results]
        listed = {t["id"]: t["state"] for t in proc("token", "list", "anna", "--json").json["control_strings"]}
        assert sorted(listed[i] for i in ids) == ["active", "superseded"]
        assert list(listed.values()).count("active") == 1
        a, b = (r["writes"][0] for r in results)
        if a["asked"] < b["done"] and b["asked"] < a["done"]:
            overlapped += 1  # each asked for the write lock before the other had committed
