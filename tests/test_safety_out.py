"""Issue 13 item 3: `bulk reset --out` is created new (O_EXCL, no symlink, 0600); an existing file
is refused (exit 5, nothing reset) unless it is the very file a resumed job created; cells a
spreadsheet would run as formulas are marked with a leading ' that a reader removes."""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys

import pytest

from b24recover.services.passwords import verify_password
from conftest import GOOD_PASSWORD, ROOT, add_user, connect_db

NOBODY = 65534


def hashes(db_path) -> dict:
    return dict(connect_db(db_path).execute("SELECT login, password_hash FROM users"))


def read_out(path) -> list[list[str]]:
    """The documented way to read the file: CSV, then one leading ' removed where there is one."""
    text = path.read_bytes().decode("utf-8")
    return [[c[1:] if c.startswith("'") else c for c in row] for row in csv.reader(io.StringIO(text, newline=""))]


def bulk(cli, out, input, *extra):
    return cli("bulk", "reset", "-", "--mode", "temporary-password", "--out", str(out), "--json", *extra,
               input=input)


@pytest.fixture
def people(store):
    for login in ("anna", "boris"):
        add_user(store, login)
    return store


def test_another_users_private_file_is_not_written_into(people, db_path, tmp_path):
    out = tmp_path / "theirs.csv"
    out.write_text("their,data\n")
    out.chmod(0o600)
    os.chown(out, NOBODY, NOBODY)  # the tests run as root: a file of someone else's
    before = hashes(db_path)
    r = bulk(people, out, "anna\n")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input"
    assert out.read_text() == "their,data\n" and hashes(db_path) == before
    assert connect_db(db_path).execute("SELECT count(*) FROM bulk_jobs").fetchone()[0] == 0


def test_a_dangling_symlink_is_not_followed(people, db_path, tmp_path):
    target = tmp_path / "created-elsewhere.csv"
    link = tmp_path / "pw.csv"
    link.symlink_to(target)
    r = bulk(people, link, "anna\n")
    assert r.exit_code == 5 and "symbolic link" in r.error["message"]
    assert not target.exists()


def test_a_resumed_job_reopens_its_own_file_and_no_other(people, db_path, tmp_path):
    out = tmp_path / "pw.csv"
    first = bulk(people, out, "anna\nghost\n")  # ghost fails: the job stays open for a re-run
    assert first.exit_code == 3 and first.json["done"] == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    dev, ino = connect_db(db_path).execute("SELECT out_dev, out_ino FROM bulk_jobs").fetchone()
    assert (dev, ino) == (out.stat().st_dev, out.stat().st_ino)

    add_user(people, "ghost")
    again = bulk(people, out, "ghost\nanna\n")  # the same job (same logins, any order)
    assert again.exit_code == 0 and again.json["resumed"] and again.json["done"] == 1
    lines = read_out(out)
    assert [login for login, _ in lines] == ["anna", "ghost"]
    stored = hashes(db_path)
    assert all(verify_password(pw, stored[login]) for login, pw in lines)


def test_a_replaced_file_is_refused_even_for_its_job(people, db_path, tmp_path):
    out = tmp_path / "pw.csv"
    assert bulk(people, out, "anna\nghost\n").exit_code == 3
    out.rename(tmp_path / "moved.csv")  # kept, so the planted file cannot reuse its inode number
    out.write_text("planted\n")  # the same name, another file (another inode)
    out.chmod(0o600)
    before = hashes(db_path)
    r = bulk(people, out, "anna\nghost\n")
    assert r.exit_code == 5 and "not the file this job created" in r.error["message"]
    assert out.read_text() == "planted\n" and hashes(db_path) == before


@pytest.mark.parametrize("change", ["mode", "owner"])
def test_the_jobs_own_file_with_a_wider_mode_or_another_owner_is_refused(people, db_path, tmp_path, change):
    out = tmp_path / "pw.csv"
    assert bulk(people, out, "anna\nghost\n").exit_code == 3
    size = out.stat().st_size
    if change == "mode":
        out.chmod(0o640)
    else:
        os.chown(out, NOBODY, NOBODY)
    r = bulk(people, out, "anna\nghost\n")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input"
    assert out.stat().st_size == size


def test_restart_of_the_same_job_may_use_its_file(people, tmp_path):
    out = tmp_path / "pw.csv"
    assert bulk(people, out, "anna\n").exit_code == 0
    again = bulk(people, out, "anna\n", "--restart")
    assert again.exit_code == 0 and not again.json["resumed"]
    assert len(read_out(out)) == 2


FORMULA_PASSWORDS = ["=HYPERLINK(\"x\")9aZ!", "+cmd|' /C calc'!A0", "-2+3+cmd", "@SUM(1+1)*cmd", "\tTabbed9!a",
                     "\rCarriage9!a", "'quoted9!aZ", "plainPassw0rd!"]


@pytest.mark.parametrize("password", FORMULA_PASSWORDS)
def test_formula_cells_round_trip_exactly(password, tmp_path):
    from b24recover.services.bulk import _append_lines

    path = tmp_path / "pw.csv"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        _append_lines(fd, [("=login", password), ("anna", password)])
    finally:
        os.close(fd)
    raw = path.read_bytes().decode("utf-8")
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    for cells in rows:  # as a spreadsheet sees the cells: none starts a formula
        assert not any(c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in cells), cells
    assert read_out(path) == [["=login", password], ["anna", password]]


def test_generated_passwords_starting_with_formula_characters_round_trip(store, db_path, tmp_path):
    """The generator's alphabet has + - = @: over many accounts some passwords start with them,
    and every one read back the documented way signs in."""
    logins = [f"user{i:03d}" for i in range(120)]
    for login in logins:
        add_user(store, login)
    out = tmp_path / "pw.csv"
    r = bulk(store, out, "\n".join(logins) + "\n", "--no-notify")
    assert r.exit_code == 0, r.stderr
    raw_rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    marked = [pw for _, pw in raw_rows if pw.startswith("'")]
    assert marked, "no generated password started with a formula character"
    assert all(pw[1:2] in "=+-@" for pw in marked)
    stored = hashes(db_path)
    for login, password in read_out(out):
        assert verify_password(password, stored[login])


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_out_is_0600_under_a_permissive_umask(store, db_path, config_path, tmp_path, umask):
    add_user(store, "anna")
    out = tmp_path / "pw.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "umask_run.py"), oct(umask), "--db", str(db_path),
                           "--config", str(config_path), "bulk", "reset", "-", "--mode", "temporary-password",
                           "--out", str(out)], input=b"anna\n", capture_output=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_nothing_is_reset_when_the_out_file_is_refused(people, db_path, tmp_path):
    out = tmp_path / "pw.csv"
    out.write_text("")
    out.chmod(0o600)
    r = bulk(people, out, "anna\nboris\n")
    assert r.exit_code == 5
    assert verify_password(GOOD_PASSWORD, hashes(db_path)["anna"])
    audit = connect_db(db_path).execute("SELECT count(*) FROM audit_log WHERE action = 'bulk.reset'")
    assert audit.fetchone()[0] == 0
