"""A deadlock or a serialization failure inside `with store.write()` on PostgreSQL (SPEC §7, issue
12), induced for real from a second connection while a b24recover process is inside its write
transaction: a clean store_locked (exit 8), nothing half-written, and a rerun completes. Why the
body is not run again, and why b24recover's own writers can cause neither: store/pg.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from b24recover.store import pg
from b24recover.store.url import StoreURL
from conftest import ROOT, Run, add_user


@pytest.fixture
def pg_only(engine):
    if engine != "postgresql":
        pytest.skip("a second PostgreSQL session takes locks on the store's tables")


@pytest.fixture
def foreign(pg_only, db_path):
    """A session that is not b24recover (an operator's script, psql) on the same store."""
    conn = pg.connect(StoreURL(str(db_path))).raw
    yield conn.cursor()
    conn.close()


def start(db_path, config_path, *args, env_extra: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)


def wait_until_blocked(cur, child: subprocess.Popen) -> None:
    """Until the b24recover process waits on a row lock inside its write transaction: the two
    sessions really overlap (a safety deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while True:
        cur.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view is a snapshot
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'b24recover' AND wait_event_type = 'Lock'"
                    " AND state = 'active' AND xact_start IS NOT NULL")
        if cur.fetchone()[0] == 1:
            return
        assert child.poll() is None and time.monotonic() < deadline, ("b24recover never waited on the lock", finish(child))
        time.sleep(0.01)


def finish(child: subprocess.Popen) -> Run:
    out, err = child.communicate(timeout=60)
    return Run(child.returncode, out.decode(), err.decode())


def active_control_string(cur, login: str):
    cur.execute("SELECT c.id FROM control_strings c JOIN users u ON u.id = c.user_id"
                " WHERE u.login = %s AND c.state = 'active'", (login,))
    return cur.fetchall()


def test_a_deadlock_with_a_foreign_session_ends_cleanly_and_a_rerun_completes(foreign, proc, db_path, config_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna")
    assert proc("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    (token,) = active_control_string(foreign, "anna")
    # The foreign session holds the row `token revoke` updates, and lets the server's deadlock
    # check find the cycle from b24recover's side (its own check would run only after 30 s).
    foreign.execute("BEGIN")
    foreign.execute("SET LOCAL deadlock_timeout = '30s'")
    foreign.execute("SELECT id FROM control_strings WHERE id = %s FOR UPDATE", token)
    child = start(db_path, config_path, "token", "revoke", "anna", "--json")
    wait_until_blocked(foreign, child)  # b24recover holds STORE_LOCK and waits for the row
    # ... and the foreign session now wants STORE_LOCK: a cycle, which the server breaks by
    # ending b24recover's transaction (this call returns once that happened).
    foreign.execute("SELECT pg_advisory_xact_lock(%s)", (pg.STORE_LOCK,))
    done = finish(child)
    foreign.execute("ROLLBACK")
    assert done.exit_code == 8, done.stderr
    assert "Traceback" not in done.stderr
    error = done.error
    assert error["code"] == "store_locked" and "deadlock detected" in error["message"]
    assert "nothing of that transaction was written" in error["message"]
    assert "run the command again" in error["hint"]
    assert active_control_string(foreign, "anna") == [token]  # the revoke left nothing behind
    assert proc("audit", "log", "--verify").exit_code == 0
    again = proc("token", "revoke", "anna", "--json")
    assert again.exit_code == 0, again.stderr
    assert active_control_string(foreign, "anna") == []
    assert proc("audit", "log", "--verify").exit_code == 0


def test_a_serializable_server_default_brings_no_serialization_failure(foreign, proc, db_path, config_path):
    """A server (or role) whose default isolation is SERIALIZABLE: a foreign session updates the row
    b24recover waits for and commits. At that level this is 'could not serialize access due to
    concurrent update'; write() begins READ COMMITTED, so the revoke simply goes on."""
    serializable = {"PGOPTIONS": os.environ["PGOPTIONS"] + " -c default_transaction_isolation=serializable"}
    assert proc("init").exit_code == 0
    add_user(proc, "anna")
    assert proc("token", "issue", "anna", "--via", "none", "--json").exit_code == 0
    (token,) = active_control_string(foreign, "anna")
    foreign.execute("BEGIN")
    foreign.execute("UPDATE control_strings SET expires_at = expires_at + 1 WHERE id = %s", token)
    child = start(db_path, config_path, "token", "revoke", "anna", "--json", env_extra=serializable)
    wait_until_blocked(foreign, child)
    foreign.execute("COMMIT")
    done = finish(child)
    assert done.exit_code == 0, done.stderr
    assert active_control_string(foreign, "anna") == []
    assert proc("audit", "log", "--verify", env=serializable).exit_code == 0
