"""Control strings end to end through the CLI: issue, supersede, expire, use, revoke, throttle."""

from __future__ import annotations

import hashlib
import re
import sqlite3

from conftest import GOOD_PASSWORD, add_user, connect_db
from tokenhelp import last_code, last_link, link_parts

NEW_PASSWORD = "a brand new passphrase 42"


def issue_none(cli, login="anna", *extra):
    r = cli("token", "issue", login, "--via", "none", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return r.json


def secret_of(issued) -> str:
    return link_parts(issued["link"])[1]


def redeem(cli, login, secret, password=NEW_PASSWORD):
    return cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
               input=f"{secret}\n{password}\n")


def test_issue_none_prints_bitrix_link_once(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com", "--lang", "ru")
    issued = issue_none(store)
    assert issued["kind"] == "link" and issued["channel"] == "none" and issued["state"] == "active"
    assert issued["link"].startswith(
        "https://portal.example.com/auth/index.php?change_password=yes&lang=ru&USER_CHECKWORD=")
    login, secret = link_parts(issued["link"])
    assert login == "anna"
    assert re.fullmatch(r"[0-9a-z]{32}", secret)
    listed = store("token", "list", "anna", "--json").json["control_strings"]
    assert [t["id"] for t in listed] == [issued["id"]]
    assert secret not in str(listed) and "link" not in listed[0]


def test_link_values_are_url_encoded(store):
    add_user(store, "ann&a b", "--email", "ab@example.com")
    issued = issue_none(store, "ann&a b")
    assert "USER_LOGIN=ann%26a%20b" in issued["link"]
    assert link_parts(issued["link"])[0] == "ann&a b"


def test_redeem_sets_password_and_uses_the_control_string(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = secret_of(issue_none(store))
    r = redeem(store, "anna", secret)
    assert r.exit_code == 0, r.stderr
    assert r.json["login"] == "anna" and r.json["password_changed"] is True
    again = redeem(store, "anna", secret, "yet another passphrase 7")
    assert again.exit_code == 6 and again.error["code"] == "control_string_used"
    # the new password is what `passwd` style verification would accept
    from b24recover.services.passwords import verify_password
    row = connect_db(db_path).execute("SELECT password_hash, must_change_password FROM users").fetchone()
    assert verify_password(NEW_PASSWORD, row[0]) and not verify_password(GOOD_PASSWORD, row[0])


def test_newest_only_old_one_is_superseded(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    first = secret_of(issue_none(store))
    clock.advance(61)
    second = secret_of(issue_none(store))
    r = redeem(store, "anna", first)
    assert r.exit_code == 6
    assert r.error["code"] == "control_string_superseded"
    assert "newer request" in r.error["message"] and "most recent" in r.error["hint"]
    assert redeem(store, "anna", second).exit_code == 0


def test_expiry_exactly_at_the_limit_and_one_second_later(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    add_user(store, "boris", "--email", "boris@example.com")
    a = secret_of(issue_none(store, "anna", "--ttl", "24h"))
    b = secret_of(issue_none(store, "boris", "--ttl", "24h"))
    clock.advance(24 * 3600)
    assert store("token", "check", "anna", "--control-string-stdin", "--json", input=a + "\n").json["state"] == "active"
    assert redeem(store, "anna", a).exit_code == 0
    clock.advance(1)
    r = redeem(store, "boris", b)
    assert r.exit_code == 6 and r.error["code"] == "control_string_expired"
    c = store("token", "check", "boris", "--control-string-stdin", "--json", input=b + "\n")
    assert c.exit_code == 6 and c.json["state"] == "expired"


def test_revoked_and_incorrect_and_unknown_login(store):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = secret_of(issue_none(store))
    assert store("token", "revoke", "anna", "--reason", "lost phone", "--json").json["revoked"] == 1
    r = redeem(store, "anna", secret)
    assert r.exit_code == 6 and r.error["code"] == "control_string_revoked"
    wrong = redeem(store, "anna", "0" * 32)
    assert wrong.exit_code == 6 and wrong.error["code"] == "control_string_incorrect"
    nobody = redeem(store, "nobody", secret)
    assert nobody.exit_code == wrong.exit_code and nobody.error == wrong.error
    garbage = redeem(store, "anna", "not a control string")
    assert garbage.error["code"] == "control_string_incorrect"


def test_sms_code_dies_after_three_wrong_tries(store, db_path):
    add_user(store, "anna", "--phone", "+7 912 345-67-89")
    r = store("token", "issue", "anna", "--via", "sms", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json["kind"] == "code" and r.json["delivery"]["status"] == "sent"
    assert r.json["delivery"]["recipient"] == "+79123456789"
    code = last_code(db_path)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    assert redeem(store, "anna", wrong).error["code"] == "control_string_incorrect"
    assert redeem(store, "anna", wrong).error["code"] == "control_string_incorrect"
    assert redeem(store, "anna", wrong).error["code"] == "too_many_attempts"
    dead = redeem(store, "anna", code)
    assert dead.exit_code == 6 and dead.error["code"] == "too_many_attempts"
    failures = connect_db(db_path).execute("SELECT failed_attempts FROM users").fetchone()[0]
    assert failures == 3  # wrong codes count; presenting the dead code again is refused, not counted


def test_code_expires_after_ten_minutes(store, db_path, clock):
    add_user(store, "anna", "--phone", "+79123456789")
    assert store("token", "issue", "anna", "--via", "sms").exit_code == 0
    code = last_code(db_path)
    clock.advance(600 + 1)
    assert redeem(store, "anna", code).error["code"] == "control_string_expired"


def test_throttle_and_force(store, clock, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    issue_none(store)
    clock.advance(30)
    r = store("token", "issue", "anna", "--via", "none", "--json")
    assert r.exit_code == 7 and r.error["code"] == "throttled" and r.error["retry_after"]
    forced = store("token", "issue", "anna", "--via", "none", "--force", "--json")
    assert forced.exit_code == 0
    forced_events = connect_db(db_path).execute(
        "SELECT count(*) FROM audit_log WHERE action = 'token.issue' AND details LIKE '%\"forced\":true%'").fetchone()[0]
    assert forced_events == 1
    for _ in range(8):
        clock.advance(61)
        issue_none(store)
    clock.advance(61)
    r = store("token", "issue", "anna", "--via", "none", "--json")
    assert r.exit_code == 7 and "24 h" in r.error["message"]


def test_request_answers_the_same_whatever_happened(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    add_user(store, "blocked", "--email", "blocked@example.com")
    assert store("user", "block", "blocked").exit_code == 0
    answers = set()
    for ident in ("anna@example.com", "ANNA@example.com", "nobody@example.com", "blocked", "anna", "+79000000000", "x\x00y"):
        r = store("token", "request", ident, "--json")
        assert r.exit_code == 0
        answers.add(r.stdout)
    assert len(answers) == 1


def test_policy_failure_does_not_use_up_the_control_string(store):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = secret_of(issue_none(store))
    short = redeem(store, "anna", secret, "short")
    assert short.exit_code == 6 and short.error["code"] == "password_policy"
    assert redeem(store, "anna", secret).exit_code == 0


def test_no_secret_without_a_way_to_read_it(store):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("redeem", "anna", "--json")
    assert r.exit_code == 5 and r.error["code"] == "input_required"


def test_blocking_and_address_change_revoke(store):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = secret_of(issue_none(store))
    assert store("user", "update", "anna", "--email", "anna2@example.com").exit_code == 0
    assert redeem(store, "anna", secret).error["code"] == "control_string_revoked"
    secret = secret_of(issue_none(store, "anna", "--force"))
    assert store("user", "block", "anna").exit_code == 0
    assert redeem(store, "anna", secret).error["code"] == "control_string_revoked"
    r = store("token", "issue", "anna", "--via", "email", "--json")
    assert r.exit_code == 4 and r.error["code"] == "blocked"


def test_issue_without_address(store):
    add_user(store, "anna", "--phone", "+79123456789")
    r = store("token", "issue", "anna", "--via", "email", "--json")
    assert r.exit_code == 4 and r.error["code"] == "no_email"
    add_user(store, "boris", "--email", "b@example.com")
    r = store("token", "issue", "boris", "--via", "sms", "--json")
    assert r.exit_code == 4 and r.error["code"] == "no_phone"


def test_email_flow_through_the_maildir(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com", "--lang", "de")
    r = store("token", "request", "anna@example.com")
    assert r.exit_code == 0
    login, secret = link_parts(last_link(db_path))
    assert login == "anna"
    assert redeem(store, "anna", secret).exit_code == 0
    messages = store("outbox", "list", "--json").json["messages"]
    assert [m["status"] for m in messages] == ["sent", "sent"]
    assert secret not in store("outbox", "list", "--json").stdout


def test_secrets_never_reach_the_database(store, db_path, clock):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+79123456789")
    secret = secret_of(issue_none(store))
    clock.advance(61)
    assert store("token", "issue", "anna", "--via", "sms").exit_code == 0
    code = last_code(db_path)
    clock.advance(61)
    assert store("token", "issue", "anna", "--via", "email").exit_code == 0
    link_secret = link_parts(last_link(db_path))[1]
    assert redeem(store, "anna", link_secret).exit_code == 0
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
    for s in (secret, link_secret, NEW_PASSWORD, GOOD_PASSWORD, code):
        assert s.encode() not in raw
    # A 6-digit code hashed without the key would be reversed by trying a million codes, so no
    # unkeyed digest of it may be stored either (SPEC §5: HMAC-SHA256 with a key outside the store).
    user_id = sqlite3.connect(db_path).execute("SELECT id FROM users WHERE login = 'anna'").fetchone()[0]
    for form in (code, f"code:{user_id}:{code}", f"{user_id}:{code}", f"anna:{code}"):
        for algorithm in ("sha256", "sha1", "md5", "sha512"):
            unkeyed = hashlib.new(algorithm, form.encode())
            assert unkeyed.hexdigest().encode() not in raw, (algorithm, form)
            assert unkeyed.digest() not in raw, (algorithm, form)


def test_qr_draws_the_link_and_prints_it_under(store):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("token", "issue", "anna", "--via", "qr")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.rstrip("\n").splitlines()
    assert lines[-1].startswith("https://portal.example.com/auth/index.php?change_password=yes")
    assert sum("█" in line or "▀" in line or "▄" in line for line in lines) > 10
    listed = store("token", "list", "anna", "--json").json["control_strings"]
    assert listed[0]["channel"] == "qr" and link_parts(lines[-1])[1] not in str(listed)


def test_request_by_phone_sends_an_sms_code(store, db_path):
    from tokenhelp import last_sms
    add_user(store, "anna", "--phone", "+79123456789", "--lang", "it")
    assert store("token", "request", "8 912 345 67 89").exit_code == 0
    to, text = last_sms(db_path)
    assert to == "+79123456789" and re.search(r"\b\d{6}\b", text)
    tokens = store("token", "list", "anna", "--json").json["control_strings"]
    assert tokens[0]["kind"] == "code" and tokens[0]["channel"] == "sms"
    outbox = store("outbox", "list", "--json").stdout
    assert last_code(db_path) not in outbox


def test_policy_refusal_is_audited_and_keeps_the_control_string(store, db_path):
    add_user(store, "anna", "--email", "anna@example.com")
    secret = secret_of(issue_none(store))
    assert redeem(store, "anna", secret, "short").error["code"] == "password_policy"
    codes = [row[0] for row in connect_db(db_path).execute(
        "SELECT json_extract(details, '$.code') FROM audit_log WHERE action = 'redeem.failed'")]
    assert codes == ["password_policy"]
    assert store("token", "check", "anna", "--control-string-stdin", input=secret + "\n").exit_code == 0
