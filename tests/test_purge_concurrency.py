"""`audit tokens --purge` on a big store while other processes issue and redeem control strings,
and a purge killed with SIGKILL halfway. Real processes, the system clock, no timed assertions
(the timings are in bench/bench_purge.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from b24recover.clock import SystemClock
from conftest import ROOT, add_user
from tokenhelp import link_parts

DAY = 86400
PASSWORD = "a brand new passphrase 42"
WORKERS = ("worker.one", "worker.two", "worker.three")
OWNERS = ("old.one", "old.two", "old.three", "old.four")
BYSTANDERS = ("keeps.one", "keeps.two")


def fill_stale(db_path, n: int, owners: list[int], now: int) -> None:
    """n control strings that ended 31-60 days ago (superseded, used, revoked in turn), written
    straight into the store in one transaction; secret hashes as random as real ones."""
    states = ("superseded", "used", "revoked")

    def rows():
        for i in range(n):
            ended = now - 31 * DAY - (i * 29 * DAY) // n
            yield (owners[i % len(owners)], "link", "none", hashlib.sha256(b"s%d" % i).hexdigest(),
                   states[i % 3], ended - 3600, ended + 3600, ended)

    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA cache_size = -131072")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                         " expires_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())
        conn.execute("COMMIT")
    finally:
        conn.close()


def query(db_path, sql, params=()):
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def user_ids(db_path, logins) -> list[int]:
    marks = ",".join("?" * len(logins))
    return [r[0] for r in query(db_path, f"SELECT id FROM users WHERE login IN ({marks}) ORDER BY id", logins)]


def seed(proc, cli, db_path, stale: int) -> dict:
    """Accounts through the CLI, then the stale rows and a few rows the purge must leave alone."""
    assert proc("init").exit_code == 0
    for login in WORKERS + OWNERS + BYSTANDERS:
        add_user(cli, login)
    now = int(time.time())
    fill_stale(db_path, stale, user_ids(db_path, OWNERS), now)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        owner = user_ids(db_path, OWNERS[:1])[0]
        conn.execute("BEGIN IMMEDIATE")
        # expired long ago but never ended: stale as "expired"
        for uid in user_ids(db_path, OWNERS):
            conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                         " expires_at) VALUES (?, 'link', 'none', ?, 'active', ?, ?)",
                         (uid, hashlib.sha256(b"x%d" % uid).hexdigest(), now - 50 * DAY, now - 49 * DAY))
        # ended yesterday: not stale
        recent = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                              " expires_at, ended_at) VALUES (?, 'link', 'none', 'r', 'used', ?, ?, ?)",
                              (owner, now - DAY, now, now - DAY)).lastrowid
        # stale, but a message carrying it is still queued
        held = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                            " expires_at, ended_at) VALUES (?, 'link', 'email', 'h', 'revoked', ?, ?, ?)",
                            (owner, now - 90 * DAY, now - 89 * DAY, now - 89 * DAY)).lastrowid
        conn.execute("INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient,"
                     " created_at) VALUES (?, ?, 'email', 'recovery_link', 'en', 'old@example.com', ?)",
                     (owner, held, now))
        conn.execute("COMMIT")
    finally:
        conn.close()
    # valid control strings of people who have not used them yet: the purge must not touch them
    keep = {}
    for login in BYSTANDERS:
        r = proc("token", "issue", login, "--via", "none", "--json")
        assert r.exit_code == 0, r.stderr
        keep[login] = (r.json["id"], link_parts(r.json["link"])[1])
    return {"recent": recent, "held": held, "keep": keep, "expired": len(OWNERS)}


def test_purge_200k_while_others_issue_and_redeem(proc, cli, db_path, config_path):
    stale = 200_000
    ctl = seed(proc, cli, db_path, stale)
    assert proc("audit", "tokens", "--json").json["stale"] == {
        "superseded": stale // 3 + 1, "used": stale // 3 + (1 if stale % 3 > 1 else 0),
        "revoked": stale // 3, "expired": len(OWNERS)}

    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path)]
    purge = subprocess.Popen([*argv, "audit", "tokens", "--purge", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT, env=env)
    done = threading.Event()
    lock = threading.Lock()
    outcomes, issue_seconds, counter = [], [], [0]

    def work(login: str) -> None:
        rounds = 0
        while not done.is_set() or rounds < 2:
            started = time.monotonic()
            issued = proc("token", "issue", login, "--via", "none", "--force", "--json")
            elapsed = time.monotonic() - started
            with lock:
                counter[0] += 1
                password = f"{PASSWORD} #{counter[0]}"
                issue_seconds.append((elapsed, not done.is_set()))
            outcomes.append(("issue", login, issued))
            if issued.exit_code != 0:
                return
            secret = link_parts(issued.json["link"])[1]
            redeemed = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                            input=f"{secret}\n{password}\n")
            outcomes.append(("redeem", login, redeemed, issued.json["id"]))
            rounds += 1

    threads = [threading.Thread(target=work, args=(login,)) for login in WORKERS]
    for t in threads:
        t.start()
    try:
        out, err = purge.communicate(timeout=120)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=120)
    assert purge.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["purged"] == stale + len(OWNERS) and report["held"] == 1

    everything = err.decode() + "".join(o[2].stderr for o in outcomes)
    assert "locked" not in everything
    failed = [(o[0], o[1], o[2].exit_code, o[2].stderr) for o in outcomes if o[2].exit_code != 0]
    assert failed == []
    redeems = [o for o in outcomes if o[0] == "redeem"]
    assert len(redeems) >= 2 * len(WORKERS)
    during = [s for s, running in issue_seconds if running]
    # The overlap really happened: the workers' events were written between the purge's start
    # and end events (the audit trail is one ordered chain), not before or after it.
    trail = query(db_path, "SELECT id, action FROM audit_log WHERE action IN"
                           " ('audit.purge.start', 'audit.purge', 'token.issue', 'redeem') ORDER BY id")
    began = next(i for i, a in trail if a == "audit.purge.start")
    ended = next(i for i, a in trail if a == "audit.purge")
    inside = [a for i, a in trail if began < i < ended]
    assert "token.issue" in inside and "redeem" in inside, "no worker wrote while the purge ran"
    print(f"\n{len(during)} token issues during the purge, longest {max(during, default=0):.2f} s; "
          f"purge {report['seconds']:.1f} s in {report['batches']} batches")

    # every control string the workers redeemed is there, used once; the others untouched
    for _, login, _, token_id in redeems:
        assert query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("used",)]
    assert query(db_path, "SELECT count(*) FROM control_strings WHERE id IN (?, ?)",
                 (ctl["recent"], ctl["held"])) == [(2,)]
    for login, (token_id, secret) in ctl["keep"].items():
        assert query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("active",)]
        r = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                 input=f"{secret}\n{PASSWORD} kept\n")
        assert r.exit_code == 0, r.stderr
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert query(db_path, "PRAGMA foreign_key_check") == []
    assert proc("audit", "tokens", "--check").exit_code == 0
    assert proc("audit", "log", "--verify").exit_code == 0


def test_kill_9_midway_leaves_a_consistent_store_and_a_rerun_finishes(proc, cli, db_path, config_path):
    stale, batch = 60_000, 500
    ctl = seed(proc, cli, db_path, stale)
    total = stale + ctl["expired"]
    before = query(db_path, "SELECT count(*) FROM control_strings")[0][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    purge = subprocess.Popen([sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
                              "audit", "tokens", "--purge", "--batch-size", str(batch)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    deleted = 0
    while time.monotonic() < deadline and purge.poll() is None:
        deleted = before - query(db_path, "SELECT count(*) FROM control_strings")[0][0]
        if deleted >= 8 * batch:
            break
        time.sleep(0.01)
    # Freeze it where it is, then read from the store that it really had work left: the test
    # states that it killed a purge midway instead of assuming the machine was slow enough.
    os.kill(purge.pid, signal.SIGSTOP)
    left_when_frozen = total - (before - query(db_path, "SELECT count(*) FROM control_strings")[0][0])
    assert left_when_frozen > 0, "the purge had already finished"
    os.kill(purge.pid, signal.SIGKILL)
    purge.wait()
    assert purge.returncode == -signal.SIGKILL

    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert query(db_path, "PRAGMA foreign_key_check") == []
    deleted = before - query(db_path, "SELECT count(*) FROM control_strings")[0][0]
    assert 0 < deleted < total
    assert deleted % batch == 0  # whole batches or nothing: no half-deleted batch
    for token_id, _ in ctl["keep"].values():
        assert query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("active",)]
    left = proc("audit", "tokens", "--json").json
    assert sum(left["stale"].values()) == total - deleted

    rerun = proc("audit", "tokens", "--purge", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    assert rerun.json["purged"] == total - deleted
    assert proc("audit", "tokens", "--check").exit_code == 0
    assert query(db_path, "SELECT count(*) FROM control_strings WHERE id IN (?, ?)",
                 (ctl["recent"], ctl["held"])) == [(2,)]
    for login, (_, secret) in ctl["keep"].items():
        r = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                 input=f"{secret}\n{PASSWORD} after kill\n")
        assert r.exit_code == 0, r.stderr
    trail = proc("audit", "log", "--action", "audit.purge.start", "--json").json["events"]
    assert len(trail) == 2  # the killed run left its start; its end never came
    ends = proc("audit", "log", "--action", "audit.purge", "--json").json["events"]
    assert [e["details"]["purged"] for e in ends] == [total - deleted]
    assert proc("audit", "log", "--verify").exit_code == 0


@pytest.fixture
def clock():
    """The system clock for the in-process CLI too, since the processes here share the store."""
    return SystemClock()
