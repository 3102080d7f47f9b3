"""`bulk reset FILE|- --mode control-string|temporary-password [--out FILE]`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import GOOD_PASSWORD, ROOT, add_user, connect_db
from b24recover.config import load_settings
from b24recover.services import bulk
from b24recover.services.context import Ctx
from b24recover.services.passwords import verify_password
from b24recover.services.policy import violations
from b24recover.store.db import open_store
from tokenhelp import last_link, link_parts, mails, outbox_dir


def users_table(db_path) -> dict:
    conn = connect_db(db_path)
    conn.row_factory = sqlite3.Row
    return {r["login"]: dict(r) for r in conn.execute("SELECT * FROM users")}


def out_lines(path: Path) -> list[tuple[str, str]]:
    """The --out file as the docs tell a reader to take it: CSV, then one leading ' removed
    from a cell that has one (the mark in front of cells a spreadsheet would run as formulas)."""
    text = path.read_bytes().decode("utf-8")
    return [tuple(c[1:] if c.startswith("'") else c for c in r) for r in csv.reader(io.StringIO(text, newline=""))]


def last_password(path: Path) -> dict[str, str]:
    """In the --out file the last line for a login is the password in force."""
    return dict(out_lines(path))


def bulk_temp(cli, source, out, *extra, input=None):
    return cli("bulk", "reset", str(source), "--mode", "temporary-password", "--out", str(out), "--json", *extra,
               input=input)


def bulk_cs(cli, source, *extra, input=None):
    return cli("bulk", "reset", str(source), "--mode", "control-string", "--json", *extra, input=input)


def assert_done_or_untouched(users: dict, written: dict, logins, done) -> None:
    """After a kill: each account the job committed has the password its --out file holds (and
    must change it); every other account is untouched, whatever the file may say."""
    for login in logins:
        if login in done:
            assert users[login]["must_change_password"] == 1
            assert verify_password(written[login], users[login]["password_hash"])
        else:
            assert users[login]["must_change_password"] == 0
            assert verify_password(GOOD_PASSWORD, users[login]["password_hash"])


def audit(db_path, action):
    conn = connect_db(db_path)
    return [(login, json.loads(d)) for login, d in
            conn.execute("SELECT login, details FROM audit_log WHERE action = ? ORDER BY id", (action,))]


@pytest.fixture
def people(store):
    for name in ("anna", "boris", "clara", "dmitri", "elena"):
        add_user(store, name, "--email", f"{name}@example.com")
    return store


# ---- temporary-password mode ------------------------------------------------------------------

def test_temporary_passwords_go_only_into_the_out_file(people, db_path, tmp_path):
    source = tmp_path / "logins.txt"
    source.write_text("anna\nboris\n\n# a comment\nclara\n", encoding="utf-8")
    out = tmp_path / "passwords.csv"
    r = bulk_temp(people, source, out)
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""  # no progress bar when stderr is not a terminal
    summary = r.json
    assert summary["mode"] == "temporary-password" and summary["done"] == 3
    assert summary["skipped"] == [] and summary["failed"] == []
    assert summary["notices"] == {"sent": 3, "failed": 0, "other": 0}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = out_lines(out)
    assert [login for login, _ in lines] == ["anna", "boris", "clara"]
    users = users_table(db_path)
    for login, password in lines:
        assert verify_password(password, users[login]["password_hash"])
        assert users[login]["must_change_password"] == 1
        assert not violations(load_settings(None, str(db_path)).policy, password, login=login)
        assert password not in r.stdout and password not in r.stderr
    assert verify_password(GOOD_PASSWORD, users["dmitri"]["password_hash"])
    stored = "\n".join(connect_db(db_path).iterdump())
    stored += "".join(p.read_bytes().decode("utf-8", "replace") for p in outbox_dir(db_path).rglob("*") if p.is_file())
    assert not any(password in stored for _, password in lines)
    # each account was told its password changed
    assert sorted(m["To"] for m in mails(db_path)) == ["anna@example.com", "boris@example.com", "clara@example.com"]
    assert [login for login, _ in audit(db_path, "bulk.reset") if login] == ["anna", "boris", "clara"]


def test_csv_with_a_login_column_and_stdin(people, db_path, tmp_path):
    data = 'EMAIL,LOGIN,NAME\nanna@example.com,anna,Anna\n"x, y",boris,"Ivanov, Boris"\n'
    out = tmp_path / "pw.csv"
    r = bulk_temp(people, "-", out, "--no-notify", input=data)
    assert r.exit_code == 0, r.stderr
    assert r.json["done"] == 2
    assert sorted(last_password(out)) == ["anna", "boris"]
    assert mails(db_path) == []


def test_logins_needing_csv_quotes_are_quoted_in_the_out_file(store, db_path, tmp_path):
    add_user(store, "smith, john")
    out = tmp_path / "pw.csv"
    r = bulk_temp(store, "-", out, input="login\n\"smith, john\"\n")
    assert r.exit_code == 0, r.stderr
    (login, password), = out_lines(out)
    assert login == "smith, john" and verify_password(password, users_table(db_path)[login]["password_hash"])


def test_rows_that_fail_are_reported_and_the_rest_go_on(people, db_path, tmp_path):
    source = tmp_path / "logins.txt"
    source.write_bytes(b"anna\nghost\nbad\x00login\nboris\n\xff\xfe\n" + b"x" * 70000 + b"\nANNA\nclara\n")
    out = tmp_path / "pw.csv"
    r = bulk_temp(people, source, out)
    assert r.exit_code == 3, r.stderr  # the first failed row is an unknown login
    summary = r.json
    assert summary["done"] == 3
    failed = {f["line"]: f for f in summary["failed"]}
    assert failed[2]["code"] == "not_found" and failed[2]["login"] == "ghost"
    assert failed[3]["code"] == "invalid_input" and "\\x00" in failed[3]["login"]
    assert failed[5]["code"] == "invalid_input" and "UTF-8" in failed[5]["reason"]
    assert failed[6]["code"] == "invalid_input"
    assert summary["skipped"] == [{"login": "ANNA", "line": 7, "reason": "line 7: the same login as line 1"}]
    assert sorted(last_password(out)) == ["anna", "boris", "clara"]
    assert r.error["code"] == "not_found"


def test_exit_code_is_that_of_the_first_failed_row(people, tmp_path):
    r = bulk_temp(people, "-", tmp_path / "pw.csv", input="anna\nbad\x01one\nghost\n")
    assert r.exit_code == 5 and [f["code"] for f in r.json["failed"]] == ["invalid_input", "not_found"]


def test_unbalanced_quote_in_csv_is_one_bad_row(people, tmp_path):
    r = bulk_temp(people, "-", tmp_path / "pw.csv", input='login,name\n"anna,x\nboris,y\n')
    assert r.exit_code == 5
    assert r.json["done"] == 1 and r.json["failed"][0]["line"] == 2


def test_rerun_does_not_reset_twice_and_restart_does(people, db_path, tmp_path):
    source = tmp_path / "logins.txt"
    source.write_text("anna\nboris\n", encoding="utf-8")
    out = tmp_path / "pw.csv"
    first = bulk_temp(people, source, out)
    hashes = {k: v["password_hash"] for k, v in users_table(db_path).items()}
    again = bulk_temp(people, source, out)
    assert again.exit_code == 0 and again.json["resumed"] is True and again.json["done"] == 0
    assert [s["reason"] for s in again.json["skipped"]] == [bulk.DONE_EARLIER] * 2
    assert {k: v["password_hash"] for k, v in users_table(db_path).items()} == hashes
    assert len(out_lines(out)) == 2
    # the same list in the other order is the same job
    reordered = bulk_temp(people, "-", out, input="boris\nanna\n")
    assert reordered.json["job"] == first.json["job"] and reordered.json["done"] == 0
    restarted = bulk_temp(people, source, out, "--restart")
    assert restarted.json["done"] == 2 and restarted.json["resumed"] is False
    assert len(out_lines(out)) == 4
    users = users_table(db_path)
    for login, password in last_password(out).items():
        assert verify_password(password, users[login]["password_hash"])


def test_out_is_required_for_temporary_passwords(people, tmp_path):
    r = people("bulk", "reset", "-", "--mode", "temporary-password", input="anna\n")
    assert r.exit_code == 2 and "--out" in r.stderr


@pytest.mark.parametrize("args", [("--mode", "control-string", "--out", "x.csv"), ("--mode", "sometimes"),
                                  ("--mode", "temporary-password", "--out", "x.csv", "--force")])
def test_bad_flag_combinations_are_usage_errors(people, tmp_path, args):
    r = people("bulk", "reset", "-", *args, input="anna\n")
    assert r.exit_code == 2
    assert not (tmp_path / "x.csv").exists() and not Path("x.csv").exists()


def test_out_with_a_wider_mode_is_refused(people, db_path, tmp_path):
    out = tmp_path / "pw.csv"
    out.write_text("keep me\n")
    out.chmod(0o644)
    r = bulk_temp(people, "-", out, input="anna\n")
    assert r.exit_code == 5 and "0644" in r.stderr
    assert out.read_text() == "keep me\n"
    assert verify_password(GOOD_PASSWORD, users_table(db_path)["anna"]["password_hash"])


def test_out_that_is_a_symlink_is_refused(people, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    target.chmod(0o600)
    link = tmp_path / "pw.csv"
    link.symlink_to(target)
    r = bulk_temp(people, "-", link, input="anna\n")
    assert r.exit_code == 5 and "symbolic link" in r.stderr
    assert target.read_text() == ""


def test_existing_private_out_file_is_refused(people, db_path, tmp_path):
    # SPEC §5: --out is a new file, or the very file a resumed job created; an existing 0600
    # file of the caller's that no job created is not written into, and nothing is reset.
    out = tmp_path / "pw.csv"
    out.write_text("earlier,line\n")
    out.chmod(0o600)
    r = bulk_temp(people, "-", out, input="anna\n")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input" and "already exists" in r.error["message"]
    assert out.read_text() == "earlier,line\n"
    assert verify_password(GOOD_PASSWORD, users_table(db_path)["anna"]["password_hash"])


def test_generated_password_then_passwd(people, db_path, tmp_path):
    out = tmp_path / "pw.csv"
    bulk_temp(people, "-", out, input="anna\n")
    password = last_password(out)["anna"]
    r = people("passwd", "anna", "--password-stdin", input=f"{password}\nmy own passphrase again\n")
    assert r.exit_code == 0, r.stderr
    assert users_table(db_path)["anna"]["must_change_password"] == 0


# ---- control-string mode ----------------------------------------------------------------------

def test_control_strings_for_everyone_who_can_get_one(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    add_user(store, "petr", "--phone", "+7 912 345-67-89")
    add_user(store, "blocked", "--email", "blocked@example.com")
    store("user", "block", "blocked")
    assert store("user", "add", "vk1", "--social", "vkontakte:1", "--no-password").exit_code == 0
    r = bulk_cs(store, "-", input="anna\npetr\nblocked\nvk1\nnobody\n")
    summary = r.json
    assert summary["done"] == 2
    assert summary["skipped"] == [{"login": "blocked", "line": 3,
                                   "reason": "blocked: blocked accounts get no control strings"}]
    assert [(f["login"], f["code"]) for f in summary["failed"]] == [("vk1", "no_email"), ("nobody", "not_found")]
    assert r.exit_code == 4  # no_email comes first
    tokens = store("token", "list", "--state", "active", "--json").json["control_strings"]
    assert sorted((t["login"], t["channel"]) for t in tokens) == [("anna", "email"), ("petr", "sms")]
    assert [m["To"] for m in mails(db_path)] == ["anna@example.com"]
    assert len(list((outbox_dir(db_path) / "sms").iterdir())) == 1
    # the link delivered works
    login, secret = link_parts(last_link(db_path))
    done = store("redeem", login, "--control-string-stdin", "--password-stdin",
                 input=f"{secret}\nfresh passphrase via bulk\n")
    assert done.exit_code == 0, done.stderr


def test_throttle_applies_and_force_passes_it(people, db_path, clock):
    assert bulk_cs(people, "-", input="anna\nboris\n").exit_code == 0
    clock.advance(5)
    again = bulk_cs(people, "-", "--restart", input="anna\nboris\n")
    assert again.exit_code == 7
    assert [f["code"] for f in again.json["failed"]] == ["throttled", "throttled"]
    # the failed rows are tried again on the next run of the same job
    forced = bulk_cs(people, "-", "--force", input="anna\nboris\n")
    assert forced.exit_code == 0 and forced.json["done"] == 2 and forced.json["resumed"] is True
    issued = [d for login, d in audit(db_path, "bulk.reset") if login]
    assert [d["forced"] for d in issued] == [False, False, True, True]


def test_delivery_failure_keeps_the_message_and_the_control_string(people, db_path, config_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config_path.write_text(config_path.read_text() +
                           f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "2s"\n')
    r = bulk_cs(people, "-", input="anna\n")
    assert r.exit_code == 9 and r.json["failed"][0]["code"] == "delivery_failed"
    assert people("outbox", "list", "--status", "failed", "--json").json["messages"]
    assert people("token", "list", "anna", "--state", "active", "--json").json["control_strings"]
    # issued is done: a re-run does not issue it again
    again = bulk_cs(people, "-", input="anna\n")
    assert again.json["skipped"][0]["reason"] == bulk.DONE_EARLIER


def test_a_notice_that_cannot_be_delivered_does_not_fail_the_reset(people, db_path, config_path, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config_path.write_text(config_path.read_text() +
                           f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "2s"\n')
    out = tmp_path / "pw.csv"
    r = bulk_temp(people, "-", out, input="anna\n")
    assert r.exit_code == 0, r.stderr
    assert r.json["done"] == 1 and r.json["notices"] == {"sent": 0, "failed": 1, "other": 0}
    failed = people("outbox", "list", "--status", "failed", "--json").json["messages"]
    assert [m["template"] for m in failed] == ["password_changed"]
    assert verify_password(last_password(out)["anna"], users_table(db_path)["anna"]["password_hash"])


# ---- service level: threads, progress ---------------------------------------------------------

@pytest.fixture
def sctx(people, db_path, config_path, clock):
    settings = load_settings(str(config_path), str(db_path))
    store = open_store(db_path)
    yield Ctx(store=store, settings=settings, clock=clock, actor="test")
    store.close()


def test_hashing_runs_in_worker_threads_never_during_a_chunk_write(sctx, monkeypatch, tmp_path):
    writing = threading.Event()
    real_store = bulk._store_chunk

    def store_chunk(ctx, job_id, chunk, *rest):
        # Every hash this chunk stores is done before its transaction begins.
        assert all(item.future is None or item.future.done() for item in chunk)
        writing.set()
        try:
            return real_store(ctx, job_id, chunk, *rest)
        finally:
            writing.clear()

    seen = []
    real = bulk.prepare_password

    def spy(ctx, password, user):
        during = writing.is_set()
        time.sleep(0.02)  # long enough that both workers take part
        result = real(ctx, password, user)
        seen.append((threading.current_thread().name, ctx.store, during or writing.is_set()))
        return result

    monkeypatch.setattr(bulk, "_store_chunk", store_chunk)
    monkeypatch.setattr(bulk, "prepare_password", spy)
    source = io.BytesIO(b"anna\nboris\nclara\ndmitri\nelena\n")
    result = bulk.bulk_reset(sctx, source, "temporary-password", out=str(tmp_path / "pw.csv"), workers=2, chunk=2)
    assert result["done"] == 5 and len(seen) == 5
    names = {name for name, _, _ in seen}
    assert len(names) == 2 and all(n.startswith("bcrypt") for n in names)
    assert all(store is None for _, store, _ in seen)  # workers never touch the sqlite connection
    assert not any(during for _, _, during in seen)
    assert len(mails_of(sctx)) == 5  # every notice delivered, the last chunk's too


def mails_of(ctx) -> list:
    return mails(ctx.settings.local_base)  # <store path>, or what a PostgreSQL store names its outbox after


def test_progress_is_reported_per_chunk(sctx, tmp_path):
    calls = []
    bulk.bulk_reset(sctx, io.BytesIO(b"anna\nboris\nclara\n"), "temporary-password",
                    out=str(tmp_path / "pw.csv"), chunk=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 3), (3, 3)]


def test_fingerprint_is_mode_and_sorted_logins():
    assert bulk.fingerprint("control-string", ["b", "a"]) == bulk.fingerprint("control-string", ["a", "b"])
    assert bulk.fingerprint("control-string", ["a"]) != bulk.fingerprint("temporary-password", ["a"])


def test_progress_bar_on_a_terminal_only(people, db_path, config_path, tmp_path):
    import pty

    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "bulk", "reset", "-", "--mode", "temporary-password", "--out", str(tmp_path / "pw.csv"), "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    done = subprocess.run(argv, cwd=ROOT, env=env, input=b"anna\nboris\n", stdout=subprocess.PIPE, stderr=slave,
                          timeout=60)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert done.returncode == 0
    assert b"resetting" in seen and json.loads(done.stdout)["done"] == 2


# ---- kill -9 in the middle ----------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_leaves_the_store_consistent_and_a_rerun_completes(store, db_path, config_path, tmp_path):
    logins = [f"user{i:03d}" for i in range(48)]
    for login in logins:
        add_user(store, login, "--email", f"{login}@example.com")
    # Slow enough hashing that the run can be killed in the middle.
    config_path.write_text('portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 10\n')
    source = tmp_path / "logins.txt"
    source.write_text("\n".join(logins) + "\n")
    out = tmp_path / "pw.csv"
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "bulk", "reset", str(source), "--mode", "temporary-password", "--out", str(out), "--batch", "8", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 16):
        assert child.poll() is None, child.communicate()
        time.sleep(0.01)
    # Frozen where it is; the store below says it was midway (8 <= done < all), not the clock.
    child.send_signal(signal.SIGSTOP)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    conn = connect_db(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = {k for (k,) in conn.execute("SELECT login_key FROM bulk_items WHERE status = 'done'")}
    conn.close()
    assert 8 <= len(done) < len(logins)
    users = users_table(db_path)
    written = last_password(out)
    assert_done_or_untouched(users, written, logins, done)
    hashes_before = {login: users[login]["password_hash"] for login in done}

    done_proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done_proc.returncode == 0, done_proc.stderr.decode()
    summary = json.loads(done_proc.stdout)
    assert summary["resumed"] is True and summary["done"] == len(logins) - len(done)
    assert len([s for s in summary["skipped"] if s["reason"] == bulk.DONE_EARLIER]) == len(done)

    users = users_table(db_path)
    written = last_password(out)
    assert sorted(written) == logins
    for login in logins:
        assert users[login]["must_change_password"] == 1
        assert verify_password(written[login], users[login]["password_hash"])
    # no account was reset twice: the first run's hashes stand, one bulk.reset event each
    assert {login: users[login]["password_hash"] for login in done} == hashes_before
    per_login = [login for login, _ in audit(db_path, "bulk.reset") if login]
    assert sorted(per_login) == logins
    conn = connect_db(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM bulk_items WHERE status = 'done'").fetchone()[0] == len(logins)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_two_runs_of_the_same_job_at_once_reset_each_account_once(store, db_path, config_path, tmp_path):
    logins = [f"twin{i:02d}" for i in range(24)]
    for login in logins:
        add_user(store, login)
    config_path.write_text('portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 8\n')
    source = tmp_path / "logins.txt"
    source.write_text("\n".join(logins) + "\n")
    out = tmp_path / "pw.csv"
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "bulk", "reset", str(source), "--mode", "temporary-password", "--out", str(out), "--batch", "4",
            "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    runs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    results = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [e.decode() for _, e in results]
    summaries = [json.loads(o) for o, _ in results]
    # they really overlapped: one run saw accounts done *meanwhile* by the other (after it had
    # started), which two runs one after the other never report
    reasons = [item["reason"] for s in summaries for item in s.get("skipped", [])]
    assert any("meanwhile" in reason for reason in reasons), reasons
    assert sum(s["done"] for s in summaries) == len(logins)
    per_login = [login for login, _ in audit(db_path, "bulk.reset") if login]
    assert sorted(per_login) == logins  # exactly one reset each
    users = users_table(db_path)
    written = last_password(out)
    assert sorted(written) == logins and len(out_lines(out)) == len(logins)
    for login in logins:
        assert verify_password(written[login], users[login]["password_hash"])
