"""Issue 13 item 14 and issue 14's file-mode point: files are checked, not trusted, and every
file is private by its own creation, whatever the umask of the process.

The umask tests run the CLI through tests/umask_run.py, which sets 022 or 000 and skips the
0077 that main() sets, so a file created with a wide mode (e.g. the key file at 0644) shows."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, add_user, connect_db
from tokenhelp import beside_store

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def key_path(db_path) -> Path:
    return beside_store(db_path, ".key")


def outbox_path(db_path) -> Path:
    return beside_store(db_path, ".outbox")


def run_umask(umask: int, db_path, config_path, *args, input: bytes = b""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "umask_run.py"), oct(umask), "--db", str(db_path),
                           "--config", str(config_path), *args], input=input, capture_output=True, cwd=ROOT,
                          env=env, timeout=120)


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_everything_created_is_private_under_a_permissive_umask(engine, db_path, config_path, tmp_path, umask):
    init = run_umask(umask, db_path, config_path, "init")
    assert init.returncode == 0, init.stderr
    outbox = outbox_path(db_path)
    if engine == "sqlite":  # a PostgreSQL store has no file of its own here
        assert mode(db_path) == 0o600
    assert mode(key_path(db_path)) == 0o600
    for folder in (outbox, outbox / "mail", outbox / "sms", outbox / "mail" / "new"):
        assert mode(folder) == 0o700, folder
    added = run_umask(umask, db_path, config_path, "user", "add", "anna", "--email", "anna@example.com",
                      "--phone", "+79123456789", "--password-stdin", input=b"correct horse battery staple\n")
    assert added.returncode == 0, added.stderr
    for via in ("email", "sms"):
        issued = run_umask(umask, db_path, config_path, "token", "issue", "anna", "--via", via, "--force")
        assert issued.returncode == 0, issued.stderr
    messages = [p for p in outbox.rglob("*") if p.is_file()]
    assert len(messages) == 2 and all(mode(p) == 0o600 for p in messages)
    for suffix in ("-wal", "-shm"):
        side = Path(str(db_path) + suffix)
        if side.exists():
            assert mode(side) == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_outbox_folders_made_by_a_delivery_are_private(store, db_path, umask):
    """The outbox root made on the first delivery, in this process (in-process CLI), under a
    permissive umask: mkdir(parents=True) used to leave the root and mail/ at 0755."""
    import shutil

    outbox = outbox_path(db_path)
    shutil.rmtree(outbox)
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+79123456789")
    old = os.umask(umask)
    try:
        assert store("token", "issue", "anna", "--via", "email").exit_code == 0
        assert store("token", "issue", "anna", "--via", "sms", "--force").exit_code == 0
    finally:
        os.umask(old)
    for folder in (outbox, outbox / "mail", outbox / "mail" / "tmp", outbox / "mail" / "new", outbox / "sms"):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))


# ---- existing files are checked ---------------------------------------------------------------

@pytest.fixture
def ready(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    return store


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_store_readable_by_others_is_refused_and_init_tightens_it(ready, db_path, suffix):
    import sqlite3

    reader = sqlite3.connect(db_path)  # keeps -wal and -shm in place, as a running process would
    reader.execute("SELECT count(*) FROM users").fetchone()
    try:
        path = Path(str(db_path) + suffix)
        assert path.exists()
        os.chmod(path, 0o644)
        r = ready("user", "list", "--json")
        assert r.exit_code == 8 and r.error["code"] == "store_unsafe" and "0644" in r.error["message"]
        assert ready("init").exit_code == 0
        assert mode(path) == 0o600
        assert ready("user", "list", "--json").exit_code == 0
    finally:
        reader.close()


def test_a_symlinked_store_is_refused_also_by_init(ready, db_path, tmp_path):
    real = tmp_path / "real.db"
    db_path.rename(real)
    db_path.symlink_to(real)
    for args in (("user", "list", "--json"), ("init", "--json")):
        r = ready(*args)
        assert r.exit_code == 8 and r.error["code"] == "store_unsafe" and "symbolic link" in r.error["message"]


def test_a_store_of_another_user_is_refused(ready, db_path):
    os.chown(db_path, NOBODY, NOBODY)
    r = ready("lookup", "anna", "--json")
    assert r.exit_code == 8 and r.error["code"] == "store_unsafe" and "owned by uid" in r.error["message"]
    assert ready("init", "--json").exit_code == 8


def test_a_world_readable_key_file_is_refused_and_init_tightens_it(ready, db_path):
    os.chmod(key_path(db_path), 0o644)
    r = ready("user", "block", "anna", "--json")
    assert r.exit_code == 5 and r.error["code"] == "unsafe_file" and "key file" in r.error["message"]
    assert ready("init").exit_code == 0
    assert mode(key_path(db_path)) == 0o600
    assert ready("user", "block", "anna", "--json").exit_code == 0


def test_a_symlinked_key_file_is_refused(ready, db_path, tmp_path):
    elsewhere = tmp_path / "key-elsewhere"
    key_path(db_path).rename(elsewhere)
    key_path(db_path).symlink_to(elsewhere)
    for args in (("user", "block", "anna", "--json"), ("init", "--json")):
        r = ready(*args)
        assert r.exit_code == 5 and r.error["code"] == "unsafe_file" and "symbolic link" in r.error["message"]


def test_a_symlinked_outbox_is_refused_before_anything_is_written(ready, db_path, tmp_path):
    import shutil

    elsewhere = tmp_path / "shared-outbox"
    shutil.move(outbox_path(db_path), elsewhere)
    outbox_path(db_path).symlink_to(elsewhere)
    r = ready("token", "issue", "anna", "--via", "email", "--json")
    assert r.exit_code == 5 and r.error["code"] == "unsafe_file" and "symbolic link" in r.error["message"]
    assert not [p for p in elsewhere.rglob("*") if p.is_file()]
    assert connect_db(db_path).execute("SELECT count(*) FROM control_strings").fetchone()[0] == 0
    assert ready("init", "--json").exit_code == 5


def test_an_open_outbox_is_refused_and_init_tightens_it(ready, db_path):
    os.chmod(outbox_path(db_path), 0o755)
    os.chmod(outbox_path(db_path) / "mail", 0o755)
    r = ready("token", "issue", "anna", "--via", "email", "--json")
    assert r.exit_code == 5 and r.error["code"] == "unsafe_file" and "0755" in r.error["message"]
    assert ready("init").exit_code == 0
    assert mode(outbox_path(db_path)) == 0o700 and mode(outbox_path(db_path) / "mail") == 0o700
    assert ready("token", "issue", "anna", "--via", "email", "--json").exit_code == 0


def test_an_outbox_of_another_user_is_refused_also_by_init(ready, db_path):
    os.chown(outbox_path(db_path) / "sms", NOBODY, NOBODY)
    assert ready("lookup", "anna", "--json").error["code"] == "unsafe_file"
    assert ready("init", "--json").exit_code == 5
