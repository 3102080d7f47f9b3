"""`diagnose`: each finding comes from a real state built through the tool itself."""

from __future__ import annotations

import hashlib

from conftest import GOOD_PASSWORD, add_user
from smtp_server import free_port
from tokenhelp import last_code, link_parts

NEW_PASSWORD = "a brand new passphrase 42"


def codes(cli, login):
    r = cli("diagnose", login, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json["login"] == login
    for f in r.json["findings"]:
        assert f["message"] and f["action"]
    return [f["code"] for f in r.json["findings"]], r.json["findings"]


def redeem(cli, login, secret, password=NEW_PASSWORD):
    return cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json", input=f"{secret}\n{password}\n")


def test_ok_when_nothing_stands_in_the_way(store):
    add_user(store, "anna", "--email", "anna@example.com")
    assert codes(store, "anna")[0] == ["ok"]


def test_blocked_comes_first(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("user", "block", "anna").exit_code == 0
    assert codes(store, "anna")[0][0] == "blocked"


def test_social_only_without_address(store):
    assert store("user", "add", "vk_ivan", "--social", "vkontakte:1", "--no-password").exit_code == 0
    found, findings = codes(store, "vk_ivan")
    assert found[:3] == ["social_only", "no_email", "no_phone"]
    assert "vkontakte" in findings[0]["message"] and "link" in findings[0]["action"]


def test_no_email_after_a_refused_request(store):
    add_user(store, "anna", "--phone", "+79123456789")
    assert codes(store, "anna")[0] == ["ok"]
    assert store("token", "request", "anna").exit_code == 0  # login -> email channel, none on file
    assert "no_email" in codes(store, "anna")[0]


def test_pending_link(store):
    assert store("user", "add", "vk_ivan", "--social", "vkontakte:1", "--no-password").exit_code == 0
    assert store("link", "vk_ivan", "--email", "ivan@example.com").exit_code == 0
    found, findings = codes(store, "vk_ivan")
    assert "pending_link" in found
    assert "ivan@example.com" in findings[found.index("pending_link")]["message"]


def test_superseded_link_used(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    first = link_parts(store("token", "issue", "anna", "--via", "none", "--json").json["link"])[1]
    clock.advance(61)
    store("token", "issue", "anna", "--via", "none")
    clock.advance(61)
    assert redeem(store, "anna", first).error["code"] == "control_string_superseded"
    found, findings = codes(store, "anna")
    assert found[0] == "control_string_superseded"
    assert "most recent" in findings[0]["action"]


def test_expired(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    store("token", "issue", "anna", "--via", "none", "--ttl", "1h")
    clock.advance(3601)
    assert "control_string_expired" in codes(store, "anna")[0]


def test_too_many_attempts(store, db_path, clock):
    add_user(store, "anna", "--phone", "+79123456789")
    store("token", "issue", "anna", "--via", "sms")
    wrong = f"{(int(last_code(db_path)) + 1) % 1000000:06d}"
    for _ in range(3):
        redeem(store, "anna", wrong)
    assert "too_many_attempts" in codes(store, "anna")[0]


def test_throttled_then_not(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    store("token", "issue", "anna", "--via", "email")
    found, findings = codes(store, "anna")
    assert "throttled" in found
    clock.advance(61)
    assert "throttled" not in codes(store, "anna")[0]


def test_delivery_sent_names_the_sender_to_whitelist(store):
    add_user(store, "anna", "--email", "anna@example.com")
    store("token", "issue", "anna", "--via", "email")
    found, findings = codes(store, "anna")
    sent = findings[found.index("delivery_sent")]
    assert "no-reply@portal.example.com" in sent["action"] and "anna@example.com" in sent["action"]


def test_delivery_failed_shows_the_server_answer(store, config_path):
    add_user(store, "anna", "--email", "anna@example.com")
    config_path.write_text(f'[hashing]\nbcrypt_rounds = 4\n[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\n'
                           f'smtp_port = {free_port()}\nsmtp_timeout = "2s"\n', encoding="utf-8")
    assert store("token", "issue", "anna", "--via", "email").exit_code == 9
    found, findings = codes(store, "anna")
    assert "delivery_failed" in found
    assert "outbox send" in findings[found.index("delivery_failed")]["action"]


def test_delivery_queued_when_the_sender_died_before_delivering(store, db_path, config_path, clock):
    """A control string committed with its message, and the process gone before delivery."""
    add_user(store, "anna", "--email", "anna@example.com")
    from b24recover.config import load_settings
    from b24recover.services.context import Ctx
    from b24recover.services.tokens import create
    from b24recover.store.db import open_store

    ctx = Ctx(store=open_store(db_path), settings=load_settings(str(config_path), str(db_path)), clock=clock)
    with ctx.store.write() as conn:
        user = conn.execute("SELECT * FROM users WHERE login = 'anna'").fetchone()
        create(ctx, conn, user, via="email", ttl=None)
    ctx.store.close()
    assert "delivery_queued" in codes(store, "anna")[0]
    assert store("outbox", "send").exit_code == 0
    assert "delivery_sent" in codes(store, "anna")[0]


def test_must_change_password_after_temporary_reset(store):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("reset", "anna", "--temporary", "--password-stdin", "--no-notify", input="temporary passphrase 99\n")
    assert r.exit_code == 0, r.stderr
    assert "must_change_password" in codes(store, "anna")[0]


def test_legacy_hash_until_upgraded(store, tmp_path):
    legacy = "abcdefgh" + hashlib.md5(b"abcdefgh" + GOOD_PASSWORD.encode()).hexdigest()
    path = tmp_path / "users.csv"
    path.write_text(f"login,email,password_hash\nolga,olga@example.com,{legacy}\n", encoding="utf-8")
    assert store("user", "import", str(path)).exit_code == 0
    assert "legacy_hash" in codes(store, "olga")[0]
    r = store("passwd", "olga", "--password-stdin", input=f"{GOOD_PASSWORD}\n{NEW_PASSWORD}\n")
    assert r.exit_code == 0, r.stderr
    assert "legacy_hash" not in codes(store, "olga")[0]


def test_ok_again_after_a_completed_recovery(store, db_path):
    from tokenhelp import last_link
    add_user(store, "anna", "--email", "anna@example.com")
    store("token", "request", "anna@example.com")
    assert "delivery_sent" in codes(store, "anna")[0]
    assert redeem(store, "anna", link_parts(last_link(db_path))[1]).exit_code == 0
    assert codes(store, "anna")[0] == ["ok"]
