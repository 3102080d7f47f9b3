"""Prompts at a real (pseudo-)terminal: re-asking, checking before asking, Ctrl-D, and the bulk
confirmation."""

from __future__ import annotations

import json

from conftest import GOOD_PASSWORD, add_user, connect_db
from ux_pty import pty_run

NEW = b"New password: "
REPEAT = b"new password: "


def _base(db_path, config_path):
    return ["--db", str(db_path), "--config", str(config_path)]


def test_new_password_is_asked_again_after_policy_refusal_and_mismatch(store, db_path, config_path, tmp_path):
    answers = [(NEW, b"short\n"),                                       # refused by the policy: asked again at once
               (NEW, b"first passphrase one\n"), (REPEAT, b"second passphrase two\n"),  # mismatch: again
               (NEW, b"same passphrase twice\n"), (REPEAT, b"same passphrase twice\n")]
    code, out = pty_run([*_base(db_path, config_path), "user", "add", "anna"], answers, cwd=tmp_path)
    assert code == 0, out
    assert "at least 12" in out and "Try again (2 more)" in out and "differ. Try again (1 more)" in out
    # The policy is checked before the confirmation: "Repeat" was asked for attempts 2 and 3 only.
    assert out.count("Repeat the new password") == 2
    assert "short" not in out and "same passphrase twice" not in out  # nothing echoed
    assert store("user", "show", "anna", "--json").json["has_password"] is True


def test_three_policy_refusals_end_with_password_policy(store, db_path, config_path, tmp_path):
    code, out = pty_run([*_base(db_path, config_path), "user", "add", "anna"], [(NEW, b"short\n")] * 3, cwd=tmp_path)
    assert code == 6 and "does not meet the policy" in out, out
    assert store("user", "list", "--json").json["accounts"] == []


def test_ctrl_d_at_a_prompt_is_no_input(store, db_path, config_path, tmp_path):
    code, out = pty_run([*_base(db_path, config_path), "user", "add", "anna"], [(NEW, b"\x04")], cwd=tmp_path)
    assert code == 5, out
    assert "no input" in out and "interrupted" not in out


def test_passwd_checks_the_current_password_before_asking_for_the_new(store, db_path, config_path, tmp_path):
    add_user(store, "anna", "--email", "anna@example.com")
    code, out = pty_run([*_base(db_path, config_path), "passwd", "anna"], [(b"Current password: ", b"wrong one\n")],
                        cwd=tmp_path)
    assert code == 6 and "New password" not in out, out
    answers = [(b"Current password: ", GOOD_PASSWORD.encode() + b"\n"), (NEW, b"a fresh passphrase here\n"),
               (REPEAT, b"a fresh passphrase here\n")]
    code, out = pty_run([*_base(db_path, config_path), "passwd", "anna"], answers, cwd=tmp_path)
    assert code == 0, out


def test_redeem_checks_the_control_string_before_asking_for_the_password(store, db_path, config_path, tmp_path):
    add_user(store, "anna", "--email", "anna@example.com")
    link = store("token", "issue", "anna", "--via", "none", "--json").json["link"]
    old = link.split("USER_CHECKWORD=")[1].split("&")[0]
    store("token", "issue", "anna", "--via", "none", "--force")
    code, out = pty_run([*_base(db_path, config_path), "redeem", "anna"],
                        [(b"Control string or SMS code: ", old.encode() + b"\n")], cwd=tmp_path)
    assert code == 6 and "outdated link" in out and "New password" not in out, out


def test_redeem_json_on_a_terminal_does_not_claim_there_is_no_terminal(store, db_path, config_path, tmp_path):
    add_user(store, "anna", "--email", "anna@example.com")
    code, out = pty_run([*_base(db_path, config_path), "redeem", "anna", "--json"], cwd=tmp_path)
    assert code == 5, out
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert error["code"] == "input_required" and "no terminal" not in error["message"]


def _must_change(db_path, login):
    return connect_db(db_path).execute("SELECT must_change_password FROM users WHERE login = ?",
                                            (login,)).fetchone()[0]


def test_bulk_reset_asks_for_confirmation_on_a_terminal(store, db_path, config_path, tmp_path):
    for login in ("anna", "boris"):
        add_user(store, login, "--email", f"{login}@example.com")
    (tmp_path / "list.txt").write_text("anna\nboris\n", encoding="utf-8")
    out_file = tmp_path / "pw.csv"
    argv = [*_base(db_path, config_path), "bulk", "reset", str(tmp_path / "list.txt"), "--mode", "temporary-password",
            "--out", str(out_file)]
    code, out = pty_run(argv, [(b"[y/N] ", b"n\n")], cwd=tmp_path)
    assert code == 130 and "Reset 2 account(s)" in out and "temporary-password" not in out.split("[y/N]")[1], out
    assert "Nothing was reset" in out
    assert not out_file.exists() and _must_change(db_path, "anna") == 0
    code, out = pty_run(argv, [(b"[y/N] ", b"y\n")], cwd=tmp_path)
    assert code == 0 and "2 done" in out, out
    assert _must_change(db_path, "anna") == 1 and len(out_file.read_text().splitlines()) == 2


def test_bulk_reset_yes_and_no_terminal_do_not_ask(store, db_path, config_path, tmp_path, proc):
    add_user(store, "anna", "--email", "anna@example.com")
    (tmp_path / "list.txt").write_text("anna\n", encoding="utf-8")
    code, out = pty_run([*_base(db_path, config_path), "bulk", "reset", str(tmp_path / "list.txt"), "--mode",
                         "control-string", "--yes"], cwd=tmp_path)
    assert code == 0 and "[y/N]" not in out, out
    done = proc("bulk", "reset", str(tmp_path / "list.txt"), "--mode", "control-string", "--force", "--restart")
    assert done.exit_code == 0 and "[y/N]" not in done.stderr + done.stdout
