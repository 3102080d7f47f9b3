"""Write-backs under concurrency and crashes, against real portal databases (SPEC §5, §6):
concurrent `portal push` processes apply each write once; a `bulk reset` killed with SIGKILL
again and again leaves every portal password known (the one --out holds, or the old one)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

from b24recover.clock import FixedClock
from b24recover.services.writeback import LEASE
from conftest import ROOT
from test_bulk import last_password
from test_writeback_portal import OLD_PASSWORD, TABLES, add, bitrix6, configure, refused_port


@pytest.fixture(scope="module", params=["mariadb", "postgres"])
def server_db(request):
    from portal_db import PortalDB

    db = PortalDB.create(request.param)
    db.encoding = "utf-8"
    yield db
    db.drop()


@pytest.fixture
def clock():
    # Subprocesses stamp leases with the real time; the in-process clock starts there too.
    return FixedClock(int(time.time()))


@pytest.fixture
def portal(server_db):
    for table in TABLES:
        server_db.execute(f"DELETE FROM {table}")
    return server_db


def argv(db_path, config_path, *args):
    return [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), *args]


def child_env() -> dict:
    """The children's environment, taken when they start (a PostgreSQL test store's schema is in
    PGOPTIONS, set per test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}


def accounts(cli, portal, config_path, n: int) -> dict[str, int]:
    old = bitrix6(OLD_PASSWORD)
    ids = {f"u{i:04d}": add(portal, f"u{i:04d}", PASSWORD=old, EMAIL=f"u{i:04d}@example.com") for i in range(n)}
    configure(config_path, portal)
    assert cli("portal", "sync", "--json").json["added"] == n
    return ids


def test_concurrent_pushes_apply_each_write_once(store, cli, portal, config_path, db_path, tmp_path):
    ids = accounts(cli, portal, config_path, 150)
    source = tmp_path / "logins.txt"
    source.write_text("\n".join(ids) + "\n")
    out = tmp_path / "pw.csv"
    configure(config_path, portal, dsn=portal.dsn.replace(f":{portal.port}/", f":{refused_port()}/"))
    queued = cli("bulk", "reset", str(source), "--mode", "temporary-password", "--out", str(out), "--json")
    assert queued.exit_code == 9, queued.stderr
    assert queued.error["code"] == "portal_write_failed"
    configure(config_path, portal)
    runs = [subprocess.Popen(argv(db_path, config_path, "portal", "push", "--json"), cwd=ROOT, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr.decode()
        results.append(json.loads(stdout))
    assert sum(r["done"] for r in results) == len(ids)  # each write applied by exactly one push
    # Overlap: a push that ran while another held the writes' claims (it found them neither
    # claimable nor done), or one that lost a claim race (skipped).
    assert any(r["skipped"] or (r["done"] == 0 and r["still_pending"] > 0) for r in results) or \
        sum(1 for r in results if r["done"]) >= 2, f"the pushes did not overlap: {results}"
    passwords = last_password(out)
    for login, pid in ids.items():
        stored = portal.query("SELECT PASSWORD FROM b_user WHERE ID = %s", (pid,))[0][0]
        assert sha512_crypt.verify(passwords[login].encode(), stored), login
        assert portal.query("SELECT COUNT(*) FROM b_user_password WHERE USER_ID = %s", (pid,))[0][0] == 1
        assert portal.query("SELECT COUNT(*) FROM b_user_auth_action WHERE USER_ID = %s", (pid,))[0][0] == 1


@pytest.mark.slow
def test_kill_9_during_bulk_reset_leaves_every_portal_password_known(store, cli, clock, portal, config_path,
                                                                     db_path, tmp_path):
    ids = accounts(cli, portal, config_path, 300)
    source = tmp_path / "logins.txt"
    source.write_text("\n".join(ids) + "\n")
    out = tmp_path / "pw.csv"
    command = argv(db_path, config_path, "bulk", "reset", str(source), "--mode", "temporary-password",
                   "--out", str(out), "--batch", "10", "--json")
    rng = random.Random(11)
    kills = 0
    for _ in range(8):
        lines = len(out.read_bytes().splitlines()) if out.exists() else 0
        child = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline and \
                (not out.exists() or len(out.read_bytes().splitlines()) <= lines):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.25))  # somewhere in a chunk: hashing, its commit, or its write-backs
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.communicate()
        if isinstance(db_path, Path):  # PostgreSQL's own WAL recovery needs no check from here
            conn = sqlite3.connect(db_path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
    assert kills >= 3, "the runs finished before they could be killed"
    final = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()
    # A write whose pusher was killed mid-apply waits for its lease to end, then any push takes it.
    clock._now = int(time.time()) + LEASE + 1
    push = cli("portal", "push", "--json")
    assert push.exit_code == 0, push.stderr
    assert push.json["still_pending"] == 0 and push.json["still_failed"] == 0
    passwords = last_password(out)
    old = 0
    for login, pid in ids.items():
        stored = portal.query("SELECT PASSWORD FROM b_user WHERE ID = %s", (pid,))[0][0]
        history = portal.query("SELECT COUNT(*) FROM b_user_password WHERE USER_ID = %s", (pid,))[0][0]
        if stored == bitrix6(OLD_PASSWORD):
            old += 1
            assert history == 0, login
        else:  # reset: the portal holds the password --out holds for it, written once (never reset twice)
            assert sha512_crypt.verify(passwords[login].encode(), stored), login
            assert history == 1, login
    assert old == 0  # the final resume reset everyone
