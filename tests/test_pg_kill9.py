"""kill -9 loops on a PostgreSQL store (SPEC §5, §7, issue 12): `user import`, `audit tokens
--purge` and `bulk reset` killed again and again in the middle of their work. After each kill the
store holds whole transactions only; a last run completes; `audit log --verify` is intact.
The SQLite versions: test_import.py, test_purge_concurrency.py, test_bulk.py."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from test_bulk import assert_done_or_untouched, audit, last_password, users_table
from test_import import HEADER, _helpers_alive, write
from test_pg_multinode import pg_query, pg_seed

from b24recover.clock import SystemClock
from b24recover.services import bulk
from b24recover.services.passwords import verify_password
from conftest import ROOT, add_user

KILLS = 3


@pytest.fixture
def pg_only(engine):
    if engine != "postgresql":
        pytest.skip("kill -9 loops on a PostgreSQL store (SQLite: test_import, test_purge_concurrency, test_bulk)")


@pytest.fixture
def clock():
    """The system clock for the in-process CLI too: the processes here share the store."""
    return SystemClock()


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env.update(extra)
    return env


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL


def wait_for(condition, child: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60  # against hanging, not a timing assertion
    while not condition():
        assert child.poll() is None, (what, child.communicate())
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def import_events(db_path) -> list[dict]:
    return [d if isinstance(d, dict) else json.loads(d)
            for (d,) in pg_query(db_path, "SELECT details FROM audit_log WHERE action = 'user.import' ORDER BY id")]


def users_count(db_path) -> int:
    return pg_query(db_path, "SELECT count(*) FROM users")[0][0]


def test_user_import_killed_again_and_again_keeps_whole_transactions(pg_only, store, tmp_path, db_path,
                                                                     config_path, proc):
    total, more = 14_000, 6_000  # PostgreSQL checks existing accounts row by row (see the report)
    lines = [f"k{i},k{i}@example.com,+7 913 {i // 10000:03d}-{i // 100 % 100:02d}-{i % 100:02d},K,,ru,"
             f"{hashlib.md5(str(i).encode()).hexdigest()},,\n" for i in range(total)]
    path = write(tmp_path, "big.csv", HEADER + "".join(lines))
    mark = str(uuid.uuid4())
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "user", "import", "-", "--format", "csv", "--on-conflict", "skip"]
    kept = 0
    for _ in range(2):  # each run keeps up to one batch (BATCH_ROWS) more: 2 kills, then the last run
        child = subprocess.Popen(argv, cwd=ROOT, env=child_env(B24RECOVER_TEST_MARK=mark), stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # `more` rows past those kept (a whole batch of BATCH_ROWS at least), and the input stays
            # open: the run cannot end on its own, whatever the speed of the machine.
            before = kept
            child.stdin.write((HEADER + "".join(lines[:before + more])).encode())
            child.stdin.flush()
            wait_for(lambda: users_count(db_path) > before, child, "the import never committed")
            kill(child)
        finally:
            child.wait()
            child.stdin.close()
        deadline = time.monotonic() + 10
        while _helpers_alive(mark) and time.monotonic() < deadline:  # they read EOF and leave
            time.sleep(0.05)
        assert _helpers_alive(mark) == []
        kept = users_count(db_path)
        events = import_events(db_path)
        # Whole transactions only: every account kept is counted by the event of its own
        # transaction, and each run's transactions follow each other line after line.
        assert before < kept < before + more  # never more than it was sent
        assert kept == sum(e["added"] for e in events)
        for prev, e in zip(events, events[1:]):
            assert e["first_line"] == 2 or e["first_line"] == prev["last_line"] + 1, (prev, e)
    r = proc("user", "import", path, "--on-conflict", "skip", "--json", timeout=300)
    assert r.exit_code == 0, r.stderr
    assert (r.json["skipped"], r.json["added"], r.json["bad"]) == (kept, total - kept, [])
    assert users_count(db_path) == total
    assert pg_query(db_path, "SELECT count(DISTINCT login_key) FROM users") == [(total,)]
    assert proc("audit", "log", "--verify").exit_code == 0


def test_purge_killed_again_and_again_deletes_whole_batches_and_a_rerun_finishes(pg_only, proc, cli, db_path,
                                                                                 config_path):
    stale, batch = 60_000, 500
    ctl = pg_seed(proc, cli, db_path, stale)
    total = stale + ctl["expired"]
    before = pg_query(db_path, "SELECT count(*) FROM control_strings")[0][0]

    def deleted() -> int:
        return before - pg_query(db_path, "SELECT count(*) FROM control_strings")[0][0]

    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "audit", "tokens", "--purge", "--batch-size", str(batch)]
    gone = 0
    for _ in range(KILLS):
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=child_env())
        start = gone
        wait_for(lambda: deleted() >= start + 4 * batch, child, "the purge never deleted a batch")
        child.send_signal(signal.SIGSTOP)
        gone = deleted()  # frozen: the store says it had work left, not the clock
        assert gone < total, "the purge had already finished"
        kill(child)
        assert deleted() == gone and gone % batch == 0  # whole batches or nothing
        for token_id, _ in ctl["keep"].values():
            assert pg_query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("active",)]
        assert sum(proc("audit", "tokens", "--json").json["stale"].values()) == total - gone
    rerun = proc("audit", "tokens", "--purge", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    assert rerun.json["purged"] == total - gone and rerun.json["held"] == 1
    assert proc("audit", "tokens", "--check").exit_code == 0
    assert pg_query(db_path, "SELECT count(*) FROM control_strings WHERE id IN (?, ?)",
                    (ctl["recent"], ctl["held"])) == [(2,)]
    for login, (_, secret) in ctl["keep"].items():  # no active control string lost
        r = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                 input=f"{secret}\na brand new passphrase after kill\n")
        assert r.exit_code == 0, r.stderr
    assert len(proc("audit", "log", "--action", "audit.purge.start", "--json").json["events"]) == KILLS + 1
    ends = proc("audit", "log", "--action", "audit.purge", "--json").json["events"]
    assert [e["details"]["purged"] for e in ends] == [total - gone]
    assert proc("audit", "log", "--verify").exit_code == 0


def test_bulk_reset_killed_again_and_again_resets_each_account_once(pg_only, store, db_path, config_path, tmp_path):
    logins = [f"user{i:03d}" for i in range(48)]
    for login in logins:
        add_user(store, login, "--email", f"{login}@example.com")
    # Slow enough hashing that each run can be killed in the middle.
    config_path.write_text('portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 10\n')
    source = tmp_path / "logins.txt"
    source.write_text("\n".join(logins) + "\n")
    out = tmp_path / "pw.csv"
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "bulk", "reset", str(source), "--mode", "temporary-password", "--out", str(out), "--batch", "8", "--json"]

    def done_logins() -> set[str]:
        return {k for (k,) in pg_query(db_path, "SELECT login_key FROM bulk_items WHERE status = 'done'")}

    done: set[str] = set()
    first_hashes: dict[str, str] = {}
    for _ in range(2):  # 48 accounts in chunks of 8: two kills leave work for the last run
        child = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = len(done)
        wait_for(lambda: len(done_logins()) >= start + 8, child, "the run never committed a chunk")
        child.send_signal(signal.SIGSTOP)
        kill(child)
        done = done_logins()
        assert start + 8 <= len(done) < len(logins)
        users = users_table(db_path)
        written = last_password(out)
        assert_done_or_untouched(users, written, logins, done)
        for login in done:
            first_hashes.setdefault(login, users[login]["password_hash"])
        assert {login: users[login]["password_hash"] for login in first_hashes} == first_hashes
    last = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, timeout=300)
    assert last.returncode == 0, last.stderr.decode()
    summary = json.loads(last.stdout)
    assert summary["resumed"] is True and summary["done"] == len(logins) - len(done)
    assert len([s for s in summary["skipped"] if s["reason"] == bulk.DONE_EARLIER]) == len(done)
    users = users_table(db_path)
    written = last_password(out)
    assert sorted(written) == logins
    for login in logins:
        assert users[login]["must_change_password"] == 1
        assert verify_password(written[login], users[login]["password_hash"])
    # None reset twice: the killed runs' hashes stand, one bulk.reset event per account.
    assert {login: users[login]["password_hash"] for login in first_hashes} == first_hashes
    assert sorted(login for login, _ in audit(db_path, "bulk.reset") if login) == logins
    assert len(done_logins()) == len(logins)
    assert (out.stat().st_mode & 0o777) == 0o600
    assert store("audit", "log", "--verify").exit_code == 0
