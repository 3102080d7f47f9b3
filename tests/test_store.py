"""The store: missing, too new, locked and corrupt stores end with exit 8 and no traceback;
`init` is idempotent and safe to race; files are private; WAL + synchronous=FULL; concurrent
writers never see "database is locked"; the audit trail records who did what, never a secret."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import GOOD_PASSWORD, ROOT, add_user, connect_db
from tamper import schema_version, set_schema_version, write_lock_held


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_store_error(run, code: str) -> None:
    assert run.exit_code == 8, (run.exit_code, run.stderr)
    assert run.error["code"] == code, run.stderr
    assert run.error["message"] and run.error["hint"]
    assert "Traceback" not in run.stderr


def user_rows(db_path: Path) -> list[tuple]:
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT login, email, phone, blocked FROM users ORDER BY id").fetchall()
    finally:
        conn.close()


# ---- stores that cannot be used -------------------------------------------------------------

def tables(db_path) -> list[str]:
    """The PostgreSQL test store's tables (its schema)."""
    conn = connect_db(db_path)
    try:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
    finally:
        conn.close()


def test_store_missing_when_there_is_no_file(cli, db_path, engine):
    for args in (("user", "list", "--json"), ("lookup", "anna", "--json"),
                 ("user", "add", "anna", "--password-stdin", "--json")):
        r = cli(*args, input=GOOD_PASSWORD + "\n")
        assert_store_error(r, "store_missing")
        assert "init" in r.error["hint"]
    # a read or a write never creates a store by accident
    assert (tables(db_path) == []) if engine == "postgresql" else not db_path.exists()


def test_store_missing_when_the_file_is_empty(cli, db_path):
    db_path.touch()
    assert_store_error(cli("user", "list", "--json"), "store_missing")
    # Not a store: left exactly as it was (not turned into a WAL database).
    assert db_path.stat().st_size == 0
    assert not Path(str(db_path) + "-wal").exists()


def test_store_missing_when_the_file_is_another_database(cli, db_path, engine):
    other = connect_db(db_path)
    other.execute("CREATE TABLE notes (text TEXT)")
    other.commit()
    other.close()
    r = cli("user", "add", "anna", "--password-stdin", "--json", input=GOOD_PASSWORD + "\n")
    assert_store_error(r, "store_missing")
    if engine == "postgresql":  # someone else's schema: nothing of ours was added to it
        assert tables(db_path) == ["notes"]
        return
    other = sqlite3.connect(db_path)
    try:
        # Someone else's database keeps its journal mode: switching it to WAL can break its owner.
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in other.execute("SELECT name FROM sqlite_master")] == ["notes"]
    finally:
        other.close()


def test_init_in_a_missing_folder(cli, tmp_path, config_path):
    r = cli("--db", str(tmp_path / "nowhere" / "b24.db"), "init", "--json")
    assert_store_error(r, "store_missing")
    assert not (tmp_path / "nowhere").exists()


def test_store_too_new(store, proc, db_path):
    set_schema_version(db_path, 99)
    assert_store_error(proc("user", "list", "--json"), "store_too_new")
    for args in (("lookup", "anna", "--json"), ("init", "--json"),
                 ("user", "add", "anna", "--password-stdin", "--json")):
        assert_store_error(store(*args, input=GOOD_PASSWORD + "\n"), "store_too_new")
    assert schema_version(db_path) == 99  # init did not "upgrade" it down


def test_store_locked_fails_fast_and_readers_still_read(store, proc, db_path):
    add_user(store, "anna")
    with write_lock_held(db_path):
        env = {"B24RECOVER_BUSY_TIMEOUT_MS": "300"}
        r = proc("user", "block", "anna", "--json", env=env)
        assert_store_error(r, "store_locked")
        # it gave up while the lock was still held, after the 0.3 s it was given, not the 10 s
        # default (how long that takes in seconds: bench/bench_timeouts.py)
        assert "locked by another process for more than 0.3 s" in r.error["message"], r.stderr
        # WAL (on PostgreSQL, MVCC): a reader is not blocked by a writer.
        looked = proc("lookup", "anna", "--json", env=env)
        assert looked.exit_code == 0 and looked.json["matches"][0]["state"] == "active"
    assert user_rows(db_path) == [("anna", None, None, 0)]
    assert store("user", "block", "anna").exit_code == 0


def test_random_bytes_are_a_corrupt_store(cli, proc, db_path):
    db_path.write_bytes(os.urandom(64 * 1024))
    runs = [proc("user", "add", "anna", "--password-stdin", "--json", input=GOOD_PASSWORD + "\n")]
    runs += [cli(*args) for args in (("user", "list", "--json"), ("lookup", "anna", "--json"), ("init", "--json"))]
    for r in runs:
        assert r.exit_code == 8, (r.exit_code, r.stderr)
        assert r.error["code"] == "store_corrupt"
        assert "Traceback" not in r.stderr


def test_a_damaged_page_is_a_corrupt_store(store, proc, db_path):
    add_user(store, "anna")
    conn = sqlite3.connect(db_path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'users'").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db_path, "r+b") as fh:  # the schema is intact; the users table's page is not
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)
    runs = [proc("user", "list", "--json")]
    runs += [store(*args) for args in (("lookup", "anna", "--json"), ("user", "show", "anna", "--json"),
                                       ("user", "block", "anna", "--json"))]
    for r in runs:
        assert "Traceback" not in r.stderr
        assert r.exit_code == 8, (r.exit_code, r.stderr)
        assert r.error["code"] == "store_corrupt"


# ---- init -------------------------------------------------------------------------------------

def test_init_is_idempotent(proc, db_path):
    first = proc("init", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json["applied"] and first.json["key_created"] is True
    key = Path(first.json["key_file"]).read_bytes()
    second = proc("init", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.json["applied"] == [] and second.json["key_created"] is False
    assert second.json["schema_version"] == first.json["schema_version"]
    assert Path(second.json["key_file"]).read_bytes() == key  # the key is never replaced
    conn = connect_db(db_path)
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'store.init'").fetchone()[0] == 1
    conn.close()


def test_concurrent_init_from_four_processes(db_path, config_path, engine):
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), "init", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
             for _ in range(4)]
    results = [(p.wait(timeout=60), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    applied = [json.loads(out)["applied"] for _, out, _ in results]
    assert sum(1 for a in applied if a) == 1  # exactly one process migrated
    assert sum(json.loads(out)["key_created"] for _, out, _ in results) == 1
    conn = connect_db(db_path)
    if engine == "sqlite":
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'store.init'").fetchone()[0] == 1
    conn.close()


# ---- files and connection settings -------------------------------------------------------------

@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def permissive_umask(request):
    """The code under test runs in this process with a permissive umask: the modes it creates must
    come from the code itself, not from the umask `main()` sets for the command line."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture
def issued_twice(cli, db_path, permissive_umask):
    """A store with a mail and an SMS delivered, created in this process under a permissive umask."""
    assert cli("init").exit_code == 0
    add_user(cli, "anna", "--email", "anna@example.com", "--phone", "+7 912 345-67-89")
    assert cli("token", "issue", "anna", "--via", "email").exit_code == 0
    # Hold another reader open: -wal/-shm must still be 0600 (they follow the database file's
    # mode, not whoever happens to open it first).
    reader = connect_db(db_path)
    reader.execute("SELECT count(*) FROM users").fetchone()
    try:
        assert cli("token", "issue", "anna", "--via", "sms", "--force").exit_code == 0
        yield Path(local_base(db_path) + ".outbox")
    finally:
        reader.close()


def local_base(db_path) -> str:
    """What the key file and the outbox are named after: the SQLite file, or see conftest.PgTestURL."""
    return getattr(db_path, "local_base", str(db_path))


def test_store_key_and_outbox_files_are_private(issued_twice, db_path, engine):
    for suffix in ("", "-wal", "-shm", ".key") if engine == "sqlite" else (".key",):
        path = Path(local_base(db_path) + suffix)
        assert path.exists(), path
        assert mode(path) == 0o600, (path, oct(mode(path)))
    files = [p for p in issued_twice.rglob("*") if p.is_file()]
    assert len(files) >= 2  # one mail, one SMS
    for f in files:
        assert mode(f) == 0o600, (f, oct(mode(f)))


# The outbox root and mail/ were made by mkdir(parents=True), whose parents get 0777 & ~umask
# (0755 under 022): the `safety` branch makes every folder 0700 (b24recover/private_files.py).
# Until that lands this is an expected failure; once it has, the marker no longer applies.
OUTBOX_ROOT_FIX = importlib.util.find_spec("b24recover.private_files") is not None


@pytest.mark.xfail(not OUTBOX_ROOT_FIX, strict=True, reason="outbox parents follow the umask until safety lands")
def test_outbox_folders_are_private_from_the_root_down(issued_twice):
    outbox = issued_twice
    dirs = [outbox, *(p for p in outbox.rglob("*") if p.is_dir())]
    assert {p.relative_to(outbox).as_posix() for p in dirs[1:]} >= {"mail", "mail/new", "mail/cur", "mail/tmp", "sms"}
    for d in dirs:
        assert mode(d) == 0o700, (d, oct(mode(d)))


def test_wal_and_synchronous_full(store, db_path):
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    from b24recover.store.db import open_store

    opened = open_store(db_path)
    try:
        assert opened.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert opened.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        assert opened.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        opened.close()


WRITER = textwrap.dedent("""
    import io, sys
    from b24recover.__main__ import main

    db, config, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    failures = []
    for i in range(count):
        sys.stdin = io.TextIOWrapper(io.BytesIO(b"correct horse battery staple\\n"), encoding="utf-8")
        login = f"{prefix}{i:02d}"
        code = main(["--db", db, "--config", config, "user", "add", login,
                     "--email", f"{login}@example.com", "--password-stdin", "--json"])
        if code != 0:
            failures.append((login, code))
    print("FAILURES", failures, file=sys.stderr)
    sys.exit(1 if failures else 0)
""")


def test_four_processes_writing_at_once(proc, db_path, config_path, tmp_path, engine):
    assert proc("init").exit_code == 0
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(db_path), str(config_path), f"w{n}_", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        for n in range(4)
    ]
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda p: p.communicate(timeout=120), procs))
    for p, (out, err) in zip(procs, outputs):
        text = err.decode("utf-8", "replace")
        assert p.returncode == 0, text[-2000:]
        assert "locked" not in text.lower() and "Traceback" not in text
    logins = [row[0] for row in user_rows(db_path)]
    assert len(logins) == 120
    assert set(logins) == {f"w{n}_{i:02d}" for n in range(4) for i in range(30)}
    conn = connect_db(db_path)
    try:
        if engine == "sqlite":
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'user.add'").fetchone()[0] == 120
    finally:
        conn.close()
    assert_chain_intact(db_path)  # concurrent appends never forked the hash chain
    # they really ran at once: the writers' events interleave in the trail (4 blocks would be 3 changes)
    prefixes = [row["login"].split("_")[0] for row in audit_rows(db_path) if row["action"] == "user.add"]
    assert sum(a != b for a, b in zip(prefixes, prefixes[1:])) > 3, prefixes


def assert_chain_intact(db_path: Path) -> None:
    from b24recover.store.audit import GENESIS, event_hash

    prev = GENESIS
    for row in audit_rows(db_path):
        assert row["prev_hash"] == prev, row["id"]
        assert row["hash"] == event_hash(prev, row["id"], row["at"], row["actor"], row["action"],
                                         row["login"], row["details"]), row["id"]
        prev = row["hash"]


# ---- audit trail --------------------------------------------------------------------------------

def audit_rows(db_path: Path) -> list[sqlite3.Row]:
    conn = connect_db(db_path, rows_by_name=True)
    try:
        return conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    finally:
        conn.close()


def test_audit_events_name_the_actor(store, db_path, monkeypatch):
    import pwd

    monkeypatch.delenv("B24RECOVER_ACTOR", raising=False)

    os_user = pwd.getpwuid(os.getuid()).pw_name
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("user", "update", "anna", "--name", "Anna").exit_code == 0
    assert store("user", "block", "anna", env={"B24RECOVER_ACTOR": "cron-job"}).exit_code == 0
    assert store("--actor", "helpdesk-7", "user", "unblock", "anna",
                 env={"B24RECOVER_ACTOR": "cron-job"}).exit_code == 0  # --actor beats the env
    assert store("--actor", "helpdesk-7", "user", "update", "anna", "--phone", "+7 912 345 67 89").exit_code == 0
    events = [(r["action"], r["login"], r["actor"]) for r in audit_rows(db_path) if r["action"] != "store.init"]
    assert events == [
        ("user.add", "anna", os_user),
        ("user.update", "anna", os_user),
        ("user.block", "anna", "cron-job"),
        ("user.unblock", "anna", "helpdesk-7"),
        ("user.update", "anna", "helpdesk-7"),
    ]
    details = {r["action"] + str(r["id"]): json.loads(r["details"]) for r in audit_rows(db_path)}
    assert any(d.get("changes", {}).get("phone") == "+79123456789" for d in details.values())


def test_no_change_no_event(store, db_path):
    add_user(store, "anna")
    before = len(audit_rows(db_path))
    assert store("user", "unblock", "anna").exit_code == 0   # already active
    assert store("user", "block", "nobody").exit_code == 3
    assert len(audit_rows(db_path)) == before


def test_audit_never_holds_a_password_or_hash(store, db_path):
    secret = "Фиолетовый жираф пьёт чай 42"
    add_user(store, "anna", "--email", "anna@example.com", password=secret)
    store("user", "update", "anna", "--name", "Anna")
    store("user", "block", "anna")
    store("user", "unblock", "anna")
    conn = connect_db(db_path)
    stored_hash = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    conn.close()
    assert stored_hash
    dump = json.dumps([dict(r) for r in audit_rows(db_path)], ensure_ascii=False)
    for needle in (secret, stored_hash, stored_hash[-31:], "$bcrypt", "$2b$", "$6$"):
        assert needle not in dump
