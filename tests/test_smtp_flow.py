"""Recovery and linking end to end through a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from smtp_server import Refuse, free_port, smtp_server
from tokenhelp import link_parts

from conftest import add_user

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def smtp_config(config_path):
    def configure(port: int):
        config_path.write_text(
            'portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 4\n'
            f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "3s"\n',
            encoding="utf-8")
    return configure


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def link_in(msg) -> str:
    return re.search(r"https://\S+USER_CHECKWORD=\S+", msg.get_body(("plain",)).get_content()).group(0)


def test_recovery_link_arrives_and_redeems(store, smtp_config):
    add_user(store, "anna", "--email", "anna@example.com", "--lang", "ru")
    with smtp_server() as server:
        smtp_config(server.port)
        r = store("token", "request", "anna@example.com", "--json")
        assert r.exit_code == 0
        assert len(server.messages) == 1
        mail_from, rcpt, data = server.messages[0]
        assert mail_from == "no-reply@portal.example.com" and rcpt == ["anna@example.com"]
        msg = parse(data)
        assert msg["To"] == "anna@example.com" and msg["Content-Language"] == "ru"
        assert re.search("[а-яА-Я]", msg["Subject"])
        login, secret = link_parts(link_in(msg))
        assert login == "anna" and "lang=ru" in link_in(msg)
        done = store("redeem", "anna", "--control-string-stdin", "--password-stdin", "--json",
                     input=f"{secret}\n{NEW_PASSWORD}\n")
        assert done.exit_code == 0, done.stderr
        assert len(server.messages) == 2  # the password-changed notice
        notice = parse(server.messages[1][2]).get_body(("plain",)).get_content()
        assert NEW_PASSWORD not in notice and secret not in notice


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_refusing_server_leaves_a_failed_message_that_send_later_delivers(store, smtp_config, stage):
    add_user(store, "anna", "--email", "anna@example.com")
    with smtp_server(Refuse(stage)) as server:
        smtp_config(server.port)
        r = store("token", "issue", "anna", "--via", "email", "--json")
        assert r.exit_code == 9
        assert r.json["delivery"]["status"] == "failed"
        assert r.error["code"] == "delivery_failed"
    failed = store("outbox", "list", "--status", "failed", "--json").json["messages"]
    assert len(failed) == 1 and "550" in failed[0]["error"]
    with smtp_server() as server:
        smtp_config(server.port)
        sent = store("outbox", "send", "--json")
        assert sent.exit_code == 0 and sent.json["sent"] == 1
        secret = link_parts(link_in(parse(server.messages[0][2])))[1]
    # the control string stayed valid through the failure
    ok = store("redeem", "anna", "--control-string-stdin", "--password-stdin", input=f"{secret}\n{NEW_PASSWORD}\n")
    assert ok.exit_code == 0, ok.stderr


def test_server_down_then_up(store, smtp_config):
    add_user(store, "anna", "--email", "anna@example.com")
    smtp_config(free_port())  # nothing listens there
    r = store("token", "issue", "anna", "--via", "email", "--json")
    assert r.exit_code == 9 and r.json["delivery"]["status"] == "failed"
    assert store("outbox", "send").exit_code == 9
    with smtp_server() as server:
        smtp_config(server.port)
        assert store("outbox", "send", "--json").json["sent"] == 1
        assert len(server.messages) == 1
    assert store("outbox", "list", "--status", "failed", "--json").json["messages"] == []


def test_superseded_message_is_cancelled_not_sent(store, smtp_config, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    smtp_config(free_port())
    assert store("token", "issue", "anna", "--via", "email").exit_code == 9
    clock.advance(61)
    with smtp_server() as server:
        smtp_config(server.port)
        assert store("token", "issue", "anna", "--via", "email").exit_code == 0
        assert store("outbox", "send", "--json").json["total"] == 0
        assert len(server.messages) == 1
    statuses = [m["status"] for m in store("outbox", "list", "--json").json["messages"]]
    assert sorted(statuses) == ["cancelled", "sent"]


def test_pending_link_flow_for_a_social_only_account(store, smtp_config):
    assert store("user", "add", "vk_ivan", "--social", "vkontakte:555", "--no-password", "--lang", "de").exit_code == 0
    with smtp_server() as server:
        smtp_config(server.port)
        r = store("link", "vk_ivan", "--email", "ivan@example.com", "--json")
        assert r.exit_code == 0, r.stderr
        assert r.json["state"] == "pending"
        assert store("user", "show", "vk_ivan", "--json").json["pending"] == ["ivan@example.com"]
        # a pending address is not a login: the portal form sends nothing to it
        assert store("token", "request", "ivan@example.com").exit_code == 0
        assert len(server.messages) == 1
        msg = parse(server.messages[0][2])
        assert server.messages[0][1] == ["ivan@example.com"] and msg["Content-Language"] == "de"
        secret = link_parts(link_in(msg))[1]
        done = store("redeem", "vk_ivan", "--control-string-stdin", "--password-stdin", "--json",
                     input=f"{secret}\n{NEW_PASSWORD}\n")
        assert done.exit_code == 0, done.stderr
        assert done.json["confirmed"] == "ivan@example.com"
    shown = store("user", "show", "vk_ivan", "--json").json
    assert shown["email"] == "ivan@example.com" and shown["has_password"] and shown["pending"] == []
    assert store("lookup", "ivan@example.com", "--json").json["matches"][0]["login"] == "vk_ivan"
