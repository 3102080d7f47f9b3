"""Guessing (issue 13 item 4): `token check` of a code uses a try exactly like `redeem` and is
audited; a per-account failure budget (`[tokens] account_failures` wrong control strings or
codes in 24 h, across codes and channels) pauses recovery (`recovery_paused`, exit 6) until the
window passes or `token revoke`; `diagnose` says so and when it ends. SMS codes are stored keyed."""

from __future__ import annotations

import hashlib
import json

from b24recover.clock import iso
from conftest import GOOD_PASSWORD, add_user, connect_db
from tokenhelp import last_code, link_parts

NEW_PASSWORD = "a brand new passphrase 42"
PHONE = "+79123456789"


def wrong(code: str) -> str:
    """A 6-digit code that is certainly not `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def check(cli, login, secret):
    return cli("token", "check", login, "--control-string-stdin", "--json", input=secret + "\n")


def redeem(cli, login, secret, password=NEW_PASSWORD):
    return cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
               input=f"{secret}\n{password}\n")


def issue_code(cli, db_path, login="anna") -> str:
    r = cli("token", "issue", login, "--via", "sms", "--force", "--json")
    assert r.exit_code == 0, r.stderr
    return last_code(db_path)


def issue_link(cli, login="anna") -> str:
    r = cli("token", "issue", login, "--via", "none", "--force", "--json")
    assert r.exit_code == 0, r.stderr
    return link_parts(r.json["link"])[1]


def events(db_path, action):
    conn = connect_db(db_path)
    try:
        return [json.loads(d) for (d,) in conn.execute(
            "SELECT details FROM audit_log WHERE action = ? ORDER BY id", (action,))]
    finally:
        conn.close()


def tokens(cli, login="anna"):
    return cli("token", "list", login, "--json").json["control_strings"]


def password_hash(db_path, login="anna"):
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT password_hash FROM users WHERE login = ?", (login,)).fetchone()[0]
    finally:
        conn.close()


def test_token_check_of_a_wrong_code_uses_a_try_like_redeem_and_is_audited(store, db_path):
    add_user(store, "anna", "--phone", PHONE)
    code = issue_code(store, db_path)
    first = check(store, "anna", wrong(code))
    assert first.exit_code == 6 and first.error["code"] == "control_string_incorrect"
    assert tokens(store)[0]["attempts"] == 1
    assert redeem(store, "anna", wrong(code)).error["code"] == "control_string_incorrect"
    assert tokens(store)[0]["attempts"] == 2
    third = check(store, "anna", wrong(code))
    assert third.exit_code == 6 and third.error["code"] == "too_many_attempts"
    assert tokens(store)[0]["state"] == "revoked" and tokens(store)[0]["reason"] == "too_many_attempts"
    # the real code no longer works, through either command
    assert check(store, "anna", code).error["code"] == "too_many_attempts"
    assert redeem(store, "anna", code).error["code"] == "too_many_attempts"
    checks = events(db_path, "token.check.failed")
    assert [e["code"] for e in checks] == ["control_string_incorrect", "too_many_attempts", "too_many_attempts"]
    assert all(code not in json.dumps(e) and wrong(code) not in json.dumps(e) for e in checks)


def test_a_right_check_is_audited_and_does_not_use_the_code(store, db_path):
    add_user(store, "anna", "--phone", PHONE)
    code = issue_code(store, db_path)
    for _ in range(5):
        r = check(store, "anna", code)
        assert r.exit_code == 0 and r.json["state"] == "active"
    assert tokens(store)[0]["attempts"] == 0
    assert len(events(db_path, "token.check")) == 5
    assert redeem(store, "anna", code).exit_code == 0


def test_budget_counts_across_codes_channels_and_commands(store, db_path, clock):
    """10 wrong tries over four codes and a link, through redeem and token check: paused.
    Then nothing is issued or accepted, the right code included; the person's password stays."""
    add_user(store, "anna", "--email", "anna@example.com", "--phone", PHONE)
    before = password_hash(db_path)
    answers = []
    for n in range(4):
        code = issue_code(store, db_path)
        tries = 3 if n < 3 else 0
        for t in range(tries):
            run = check if (n + t) % 2 else redeem
            answers.append(run(store, "anna", wrong(code)).error["code"])
        clock.advance(60)
    link = issue_link(store)
    for _ in range(1, 10 - len(answers)):
        answers.append(redeem(store, "anna", "0" * 32).error["code"])
    inc, tma = "control_string_incorrect", "too_many_attempts"
    assert answers == [inc, inc, tma] * 3  # each new code starts its own three tries; the budget goes on
    tenth = redeem(store, "anna", link[::-1])
    assert tenth.exit_code == 6 and tenth.error["code"] == "recovery_paused"
    assert tenth.error["paused_until"]

    # nothing is accepted: not the live link, not a code
    for run in (check, redeem):
        r = run(store, "anna", link)
        assert r.exit_code == 6 and r.error["code"] == "recovery_paused"
    assert password_hash(db_path) == before
    assert [t["state"] for t in tokens(store)][0] == "active"  # not used, just not accepted

    # nothing new is issued: operator (exit 6, --force does not pass it) and portal (silent)
    for via in ("email", "sms", "none"):
        r = store("token", "issue", "anna", "--via", via, "--force", "--json")
        assert r.exit_code == 6 and r.error["code"] == "recovery_paused", r.stderr
        assert "token revoke anna" in r.error["hint"]
    count = len(tokens(store))
    r = store("token", "request", "anna@example.com", "--json")
    assert r.exit_code == 0 and r.json["status"] == "accepted"
    assert len(tokens(store)) == count
    assert events(db_path, "token.request.refused")[-1]["reason"] == "recovery_paused"
    # tries while paused are refused but not counted (they would only prolong the pause)
    assert connect_db(db_path).execute("SELECT count(*) FROM recovery_failures").fetchone()[0] == 10


def test_pause_ends_when_the_window_has_passed(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    link = issue_link(store)
    start = clock.now()
    for i in range(10):
        redeem(store, "anna", f"{i:032d}")
        clock.advance(60)
    r = redeem(store, "anna", link)
    assert r.error["code"] == "recovery_paused"
    # the oldest wrong try leaves the window 24 h after it was made: then 9 remain, below 10
    assert r.error["paused_until"] == iso(start + 86400)
    clock.advance(start + 86400 - 1 - clock.now())
    assert redeem(store, "anna", link).error["code"] == "recovery_paused"
    clock.advance(1)
    assert redeem(store, "anna", link).exit_code == 0


def test_token_revoke_resets_the_count_and_is_audited(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    issue_link(store)
    for i in range(10):
        redeem(store, "anna", f"{i:032d}")
    assert store("token", "issue", "anna", "--via", "none", "--json").error["code"] == "recovery_paused"
    revoked = store("token", "revoke", "anna", "--json")
    assert revoked.exit_code == 0 and revoked.json["failures_reset"] == 10
    assert events(db_path, "token.revoke")[-1]["failures_reset"] == 10
    link = issue_link(store)
    assert redeem(store, "anna", link).exit_code == 0


def test_the_budget_is_configurable(store, db_path, config_path):
    config_path.write_text(config_path.read_text() + "[tokens]\naccount_failures = 3\n")
    add_user(store, "anna", "--email", "anna@example.com")
    link = issue_link(store)
    codes = [redeem(store, "anna", f"{i:032d}").error["code"] for i in range(3)]
    assert codes == ["control_string_incorrect", "control_string_incorrect", "recovery_paused"]
    assert redeem(store, "anna", link).error["code"] == "recovery_paused"


def test_a_policy_refusal_and_an_outdated_link_are_not_wrong_guesses(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    old = issue_link(store)
    link = issue_link(store)
    for _ in range(12):
        assert redeem(store, "anna", link, "short").error["code"] == "password_policy"
        assert redeem(store, "anna", old).error["code"] == "control_string_superseded"
    assert redeem(store, "anna", link).exit_code == 0


def test_diagnose_shows_the_pause_and_when_it_ends(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    issue_link(store)
    start = clock.now()
    for i in range(10):
        redeem(store, "anna", f"{i:032d}")
    found = store("diagnose", "anna", "--json").json["findings"]
    paused = [f for f in found if f["code"] == "recovery_paused"]
    assert len(paused) == 1
    assert iso(start + 86400) in paused[0]["message"] and "token revoke anna" in paused[0]["action"]
    # every other suggested command waits for the pause, since it would be refused now
    for f in found:
        if f["code"] != "recovery_paused" and "b24recover token issue" in f["action"]:
            assert f["action"].startswith("Once the pause has ended")
    assert store("token", "revoke", "anna").exit_code == 0
    codes = [f["code"] for f in store("diagnose", "anna", "--json").json["findings"]]
    assert "recovery_paused" not in codes


def test_sms_codes_are_stored_keyed(store, db_path, monkeypatch):
    """The stored form of a code is useless without the key: not a bare hash of the code, and
    under another key the very same code does not verify."""
    add_user(store, "anna", "--phone", PHONE)
    code = issue_code(store, db_path)
    conn = connect_db(db_path)
    stored, uid = conn.execute("SELECT secret_hash, user_id FROM control_strings").fetchone()
    conn.close()
    bare = [hashlib.sha256(v.encode()).hexdigest() for v in (code, f"code:{uid}:{code}", f"{uid}:{code}")]
    assert stored not in bare and code not in stored
    other = store("token", "check", "anna", "--control-string-stdin", "--json", input=code + "\n",
                  env={"B24RECOVER_SECRET": "another key, 32 characters or more, for this test"})
    assert other.exit_code == 6 and other.error["code"] == "control_string_incorrect"
    assert check(store, "anna", code).exit_code == 0  # with the store's own key it does
