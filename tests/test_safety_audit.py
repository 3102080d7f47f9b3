"""Issue 13 items 16 and 17: the audit chain is verified against a head kept outside the table
(HMAC'd with the key file), so deleting the newest events is found; `[audit] syslog = true`
sends each event to syslog (a real datagram socket at /dev/log here); `audit tokens
--older-than 0s` includes what ended in this very second."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT, add_user, connect_db
from tamper import tamper
from tokenhelp import beside_store


def rows(db_path, sql, params=()):
    conn = connect_db(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def trail(store):
    """1 store.init, then 30 user.add events."""
    for i in range(30):
        add_user(store, f"user{i:02d}")
    return store


def verify(cli):
    r = cli("audit", "log", "--verify", "--json")
    return r, (r.json if r.stdout else None)


def test_an_intact_trail_ends_at_its_sealed_head(trail, db_path):
    r, result = verify(trail)
    assert r.exit_code == 0 and result["verified"] and result["events"] == 31
    (last_id, last_hash, mac), = rows(db_path, "SELECT last_id, last_hash, mac FROM audit_head")
    assert (last_id, last_hash) == tuple(rows(db_path, "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")[0])
    assert len(mac) == 64


def test_deleting_the_newest_20_events_is_found(trail, db_path):
    tamper(db_path, ("DELETE FROM audit_log WHERE id > 11", ()))
    r, result = verify(trail)
    assert r.exit_code == 10 and result["verified"] is False
    assert result["broken"]["reason"] == "the newest event(s) 12-31 were deleted"
    assert r.error["code"] == "check_found" and "12-31 were deleted" in r.error["message"]


def test_the_next_event_does_not_hide_the_deletion(trail, db_path):
    tamper(db_path, ("DELETE FROM audit_log WHERE id > 11", ()))
    add_user(trail, "after")  # a normal command writes the next event
    r, result = verify(trail)
    assert r.exit_code == 10
    assert result["broken"]["id"] == 32 and "12-31 before it are missing" in result["broken"]["reason"]


def test_a_head_rewritten_without_the_key_is_found(trail, db_path):
    last = rows(db_path, "SELECT id, hash FROM audit_log WHERE id = 11")[0]
    tamper(db_path, ("DELETE FROM audit_log WHERE id > 11", ()),
           ("UPDATE audit_head SET last_id = ?, last_hash = ?, mac = ?", (*last, "0" * 64)))
    r, result = verify(trail)
    assert r.exit_code == 10 and "does not match the key file" in result["broken"]["reason"]
    add_user(trail, "after")  # and the next event does not launder it
    r, result = verify(trail)
    assert r.exit_code == 10 and "altered or removed before event 12" in result["broken"]["reason"]


def test_a_deleted_head_is_found_and_stays_found(trail, db_path):
    tamper(db_path, ("DELETE FROM audit_log WHERE id > 11", ()), ("DELETE FROM audit_head", ()))
    r, result = verify(trail)
    assert r.exit_code == 10 and "head of the trail is missing" in result["broken"]["reason"]
    add_user(trail, "after")
    r, result = verify(trail)
    assert r.exit_code == 10 and "altered or removed before event 12" in result["broken"]["reason"]


def test_another_key_does_not_verify_the_head(trail, db_path):
    beside_store(db_path, ".key").write_text("f" * 64 + "\n")
    r, result = verify(trail)
    assert r.exit_code == 10 and "does not match the key file" in result["broken"]["reason"]


def test_an_event_that_rolls_back_leaves_the_head_alone(trail, db_path):
    before = rows(db_path, "SELECT * FROM audit_head")
    r = trail("user", "add", "user01", "--no-password", "--social", "x:1", "--json")  # a conflict
    assert r.exit_code == 4
    assert rows(db_path, "SELECT * FROM audit_head") == before
    assert verify(trail)[0].exit_code == 0


def test_a_store_from_before_the_head_is_sealed_by_init(tmp_path, config_path):
    """Build a store with every migration before 0006_safety and a trail written the old way
    (no head); `init` upgrades it, seals the head at its last event, and it verifies."""
    from b24recover.store import schema
    from b24recover.store.audit import GENESIS, event_hash

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    every = list(schema.MIGRATIONS)
    schema.MIGRATIONS[:] = every[:[name for name, _ in every].index("0006_safety")]
    try:  # the real runner, with the migrations an older b24recover had
        conn.execute("BEGIN IMMEDIATE")
        schema.apply_migrations(conn)
        conn.execute("COMMIT")
    finally:
        schema.MIGRATIONS[:] = every
    prev = GENESIS
    for event_id in range(1, 4):
        digest = event_hash(prev, event_id, 1_790_000_000, "old", "user.add", f"u{event_id}", "{}")
        conn.execute("INSERT INTO audit_log (id, at, actor, action, login, login_key, details, prev_hash, hash)"
                     " VALUES (?, 1790000000, 'old', 'user.add', ?, ?, '{}', ?, ?)",
                     (event_id, f"u{event_id}", f"u{event_id}", prev, digest))
        prev = digest
    conn.execute("INSERT INTO users (login, login_key, created_at, updated_at) VALUES ('anna', 'anna', 1, 1)")
    conn.close()
    os.chmod(db, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "b24recover", "--db", str(db), "--config", str(config_path),
                               *args], capture_output=True, cwd=ROOT, env=env, timeout=60)

    assert cli("init").returncode == 0
    done = cli("audit", "log", "--verify", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == 4  # the 3 old ones and store.init
    assert rows(db, "SELECT login_skeleton FROM users") == [("anna",)]
    assert cli("init").returncode == 0  # idempotent: nothing resealed, still intact
    assert cli("audit", "log", "--verify").returncode == 0


# ---- [audit] syslog ----------------------------------------------------------------------------

@pytest.fixture
def dev_log():
    """A real datagram socket at /dev/log, where syslog(3) writes (the tests run as root on a
    machine without a syslog daemon); every datagram sent there is received here."""
    path = "/dev/log"
    if os.path.lexists(path):
        pytest.skip("/dev/log already exists (a syslog daemon runs here); not taking it over")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
    except OSError as exc:
        pytest.skip(f"cannot create /dev/log: {exc}")
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()
        os.unlink(path)


def received(sock, pid: int) -> list[dict]:
    sock.settimeout(0.5)
    lines = []
    try:
        while True:
            data = sock.recv(65536).decode("utf-8")
            if f"b24recover[{pid}]: audit " in data:
                lines.append(json.loads(data.split(": audit ", 1)[1]))
    except socket.timeout:
        return lines


def run_proc(db_path, config_path, *args, input=b""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    child = subprocess.Popen([sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
                              *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                             env=env)
    out, err = child.communicate(input, timeout=60)
    return child.pid, child.returncode, err


def test_syslog_gets_a_copy_of_each_committed_event(store, db_path, config_path, dev_log):
    config_path.write_text(config_path.read_text() + "[audit]\nsyslog = true\n")
    pid, code, err = run_proc(db_path, config_path, "user", "add", "anna", "--email", "anna@example.com",
                              "--password-stdin", input=b"correct horse battery staple\n")
    assert code == 0, err
    (event,) = received(dev_log, pid)
    stored = rows(db_path, "SELECT id, action, login, hash FROM audit_log ORDER BY id DESC LIMIT 1")[0]
    assert (event["id"], event["action"], event["login"], event["hash"]) == stored
    assert event["details"]["email"] == "anna@example.com" and "correct horse" not in json.dumps(event)
    pid, code, _ = run_proc(db_path, config_path, "user", "add", "anna", "--no-password", "--social", "x:1")
    assert code == 4 and received(dev_log, pid) == []  # rolled back: nothing to copy


def test_no_syslog_copy_unless_configured(store, db_path, config_path, dev_log):
    pid, code, err = run_proc(db_path, config_path, "user", "add", "anna", "--password-stdin",
                              input=b"correct horse battery staple\n")
    assert code == 0, err
    assert received(dev_log, pid) == []


# ---- audit tokens --older-than 0s --------------------------------------------------------------

def test_older_than_zero_includes_what_ended_this_second(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "issue", "anna", "--via", "none").exit_code == 0
    assert store("token", "issue", "anna", "--via", "none", "--force").exit_code == 0  # same second
    report = store("audit", "tokens", "--older-than", "0s", "--json").json
    assert report["stale"]["superseded"] == 1
    assert store("audit", "tokens", "--older-than", "0s", "--check").exit_code == 10
    purged = store("audit", "tokens", "--older-than", "0s", "--purge", "--json").json
    assert purged["purged"] == 1
    assert rows(db_path, "SELECT state FROM control_strings") == [("active",)]
