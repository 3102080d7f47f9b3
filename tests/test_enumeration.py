"""Answers must not reveal accounts (issue 13 item 5, SPEC §2): `redeem` and `token check` for a
login that does not exist answer exactly as for a real account with a wrong control string,
through the whole sequence of tries, and keep the same kind of state (tries counted, audited,
the typed login kept only as a keyed hash); `token request` answers the same in every case,
is throttled silently, and delivers after it has answered."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from conftest import add_user, connect_db
from tokenhelp import last_code, outbox_dir, wait_until

PHONE = "+79123456789"
NEW_PASSWORD = "a brand new passphrase 42"
# (shape of the wrong secret, command) for each try; 12 tries pass the budget of 10
SEQUENCE = [("code", "redeem"), ("code", "check"), ("link", "redeem"), ("code", "redeem"),
            ("code", "check"), ("link", "check"), ("junk", "redeem"), ("code", "check"),
            ("code", "redeem"), ("code", "check"), ("link", "redeem"), ("code", "check")]


def secret_for(shape: str, n: int, avoid: str | None) -> str:
    if shape == "code":
        value = f"{(n * 7919 + 13) % 1_000_000:06d}"
        return value if value != avoid else f"{(int(value) + 1) % 1_000_000:06d}"
    if shape == "link":
        return f"{n:032d}"
    return "not a control string"


def attempt(cli, command: str, login: str, secret: str):
    if command == "check":
        r = cli("token", "check", login, "--control-string-stdin", "--json", input=secret + "\n")
    else:
        r = cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                input=f"{secret}\n{NEW_PASSWORD}\n")
    return r.exit_code, r.stdout, r.error


def answers(cli, spellings, avoid=None):
    return [attempt(cli, command, spellings[n % len(spellings)], secret_for(shape, n, avoid))
            for n, (shape, command) in enumerate(SEQUENCE)]


@pytest.mark.parametrize("state", ["active code", "active link", "nothing issued"])
def test_unknown_login_answers_exactly_like_a_real_one(store, db_path, state):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", PHONE)
    code = None
    if state == "active code":
        assert store("token", "issue", "anna", "--via", "sms").exit_code == 0
        code = last_code(db_path)
    elif state == "active link":
        assert store("token", "issue", "anna", "--via", "email").exit_code == 0
    real = answers(store, ["anna", "Anna", "ANNA"], avoid=code)
    fake = answers(store, ["nobody", "Nobody", "NOBODY"], avoid=code)
    assert fake == real
    codes = [err["code"] for _, _, err in real]
    assert codes[:3] == ["control_string_incorrect"] * 3  # two wrong codes, then a wrong link
    assert codes[3] == "too_many_attempts"  # the third wrong code
    assert codes[9:] == ["recovery_paused"] * 3  # the tenth wrong try reaches the budget
    assert {exit_code for exit_code, _, _ in real} == {6}


def test_unknown_logins_are_tracked_keyed_and_audited(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    for n in range(3):
        attempt(store, "redeem" if n % 2 else "check", "nobody", f"{n:06d}")
    conn = connect_db(db_path)
    try:
        subjects = {s for (s,) in conn.execute("SELECT subject FROM recovery_failures")}
        events = conn.execute("SELECT action, login, details FROM audit_log"
                              " WHERE action IN ('redeem.failed', 'token.check.failed') ORDER BY id").fetchall()
    finally:
        conn.close()
    assert len(subjects) == 1
    subject = subjects.pop()
    assert "nobody" not in subject.lower()
    assert subject.removeprefix("k:") not in {hashlib.sha256(v).hexdigest() for v in (b"nobody", b"login:nobody")}
    assert [(a, login) for a, login, _ in events] == [("token.check.failed", None), ("redeem.failed", None),
                                                      ("token.check.failed", None)]
    assert [json.loads(d)["typed_login"] for _, _, d in events] == ["nobody"] * 3
    assert [json.loads(d)["code"] for _, _, d in events] == ["control_string_incorrect", "control_string_incorrect",
                                                           "too_many_attempts"]
    # a different typed login has its own count
    assert attempt(store, "check", "somebody", "000001")[2]["code"] == "control_string_incorrect"


def test_token_check_of_an_unknown_login_in_a_real_process(proc):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    seen = []
    for login in ("anna", "nobody"):
        r = proc("token", "check", login, "--control-string-stdin", "--json", input="0" * 32 + "\n")
        seen.append((r.exit_code, r.stdout, r.error))
    assert seen[0] == seen[1]
    assert seen[0][0] == 6 and seen[0][2]["code"] == "control_string_incorrect"


# ---- token request ------------------------------------------------------------------------------

def control_strings(db_path) -> int:
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT count(*) FROM control_strings").fetchone()[0]
    finally:
        conn.close()


def refusals(db_path) -> list[str]:
    conn = connect_db(db_path)
    try:
        return [json.loads(d)["reason"] for (d,) in conn.execute(
            "SELECT details FROM audit_log WHERE action = 'token.request.refused' ORDER BY id")]
    finally:
        conn.close()


def test_token_request_is_throttled_silently(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    outs = {store("token", "request", "anna@example.com", "--json").stdout for _ in range(3)}
    assert len(outs) == 1
    assert control_strings(db_path) == 1
    assert refusals(db_path) == ["throttled", "throttled"]
    assert len(list((outbox_dir(db_path) / "mail" / "new").iterdir())) == 1
    clock.advance(60)
    assert store("token", "request", "anna@example.com").exit_code == 0
    assert control_strings(db_path) == 2


def test_token_request_daily_limit(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    for _ in range(10):
        assert store("token", "request", "anna").exit_code == 0
        clock.advance(61)
    assert control_strings(db_path) == 10 and refusals(db_path) == []
    assert store("token", "request", "anna").exit_code == 0
    assert control_strings(db_path) == 10 and refusals(db_path) == ["throttled"]


def statuses(proc) -> list[str]:
    return [m["status"] for m in proc("outbox", "list", "--json").json["messages"]]


BLOCKING_SMS = """
import pathlib, sys, time
barrier, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
while not barrier.exists():
    time.sleep(0.02)
out.write_text(sys.argv[-1] + "\\n" + sys.stdin.read())
"""


def test_token_request_answers_before_delivery_and_delivery_follows(proc, db_path, config_path, tmp_path):
    """The gateway is held until the test releases it: `token request` has already exited by
    then (its answer never waits for a delivery), and the message still goes out afterwards."""
    script, barrier, out = tmp_path / "gateway.py", tmp_path / "release", tmp_path / "sms.txt"
    script.write_text(BLOCKING_SMS)
    config_path.write_text(config_path.read_text() + "[sms]\ntransport = \"command\"\n"
                           f"command = {json.dumps([sys.executable, str(script), str(barrier), str(out)])}\n"
                           "http_timeout = \"60s\"\n")
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--phone", PHONE)
    answered = proc("token", "request", "8 912 345 67 89")
    assert answered.exit_code == 0
    assert control_strings(db_path) == 1
    assert not out.exists()
    assert statuses(proc) != ["sent"]
    barrier.touch()
    wait_until(lambda: statuses(proc) == ["sent"], "the held message was never delivered")
    assert out.read_text().startswith(PHONE)


def test_token_request_in_a_real_process_same_answer_and_one_delivery(proc, db_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    add_user(proc, "boris", "--email", "boris@example.com")
    assert proc("user", "block", "boris").exit_code == 0
    assert proc("user", "add", "vk.only", "--social", "vkontakte:1", "--no-password").exit_code == 0
    outs = set()
    for ident in ("anna@example.com", "nobody@example.com", "boris@example.com", "anna", "vk.only"):
        r = proc("token", "request", ident, "--json")
        assert r.exit_code == 0
        outs.add(r.stdout)
    assert len(outs) == 1
    assert refusals(db_path) == ["not_found", "blocked", "throttled", "no_email"]
    wait_until(lambda: statuses(proc) == ["sent"], "the message was never delivered")
    assert len(list((outbox_dir(db_path) / "mail" / "new").iterdir())) == 1
