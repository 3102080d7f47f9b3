"""`link`: pending addresses, --no-verify, conflicts, social identities."""

from __future__ import annotations

from conftest import add_user
from tokenhelp import last_code, last_link, link_parts

NEW_PASSWORD = "a brand new passphrase 42"


def social_only(cli, login="vk_ivan", identity="vkontakte:555"):
    r = cli("user", "add", login, "--social", identity, "--no-password")
    assert r.exit_code == 0, r.stderr


def test_social_only_account_cannot_recover_until_linked(store):
    social_only(store)
    r = store("token", "issue", "vk_ivan", "--via", "email", "--json")
    assert r.exit_code == 4 and r.error["code"] == "no_email" and "link" in r.error["hint"]
    assert store("token", "request", "vk_ivan").exit_code == 0
    assert store("token", "list", "vk_ivan", "--json").json["control_strings"] == []


def test_phone_link_confirmed_by_sms_code(store, db_path):
    social_only(store)
    r = store("link", "vk_ivan", "--phone", "8 912 345-67-89", "--json")
    assert r.exit_code == 0 and r.json["state"] == "pending" and r.json["address"] == "+79123456789"
    code = last_code(db_path)
    # while pending, the phone is not a login and the account still has no phone
    assert store("lookup", "+79123456789", "--json").exit_code == 3
    again = store("token", "issue", "vk_ivan", "--via", "sms", "--json")
    assert again.exit_code == 4 and again.error["code"] == "pending_link"
    done = store("redeem", "vk_ivan", "--control-string-stdin", "--password-stdin", "--json",
                 input=f"{code}\n{NEW_PASSWORD}\n")
    assert done.exit_code == 0, done.stderr
    assert store("lookup", "+79123456789", "--json").json["matches"][0]["login"] == "vk_ivan"


def test_second_pending_address_replaces_the_first(store, db_path):
    social_only(store)
    assert store("link", "vk_ivan", "--email", "first@example.com").exit_code == 0
    first = link_parts(last_link(db_path))[1]
    assert store("link", "vk_ivan", "--email", "second@example.com").exit_code == 0
    second = link_parts(last_link(db_path))[1]
    assert store("user", "show", "vk_ivan", "--json").json["pending"] == ["second@example.com"]
    old = store("redeem", "vk_ivan", "--control-string-stdin", "--password-stdin", "--json",
                input=f"{first}\n{NEW_PASSWORD}\n")
    assert old.exit_code == 6 and old.error["code"] == "control_string_superseded"
    assert store("redeem", "vk_ivan", "--control-string-stdin", "--password-stdin",
                 input=f"{second}\n{NEW_PASSWORD}\n").exit_code == 0
    assert store("user", "show", "vk_ivan", "--json").json["email"] == "second@example.com"


def test_no_verify_attaches_at_once_and_notifies_the_other_address(store, db_path):
    add_user(store, "anna", "--phone", "+79123456789")
    r = store("link", "anna", "--email", "Anna@Example.com", "--no-verify", "--json")
    assert r.exit_code == 0 and r.json["state"] == "linked"
    assert store("lookup", "anna@example.com", "--json").json["matches"][0]["login"] == "anna"
    events = store("user", "show", "anna", "--json").json["events"]
    assert any(e["action"] == "link" and e["details"]["no_verify"] for e in events)
    from tokenhelp import last_sms
    to, text = last_sms(db_path)
    assert to == "+79123456789" and "A***@example.com" in text


def test_conflicts_name_the_other_account(store):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+79123456789")
    social_only(store)
    for flag, value in (("--email", "ANNA@example.com"), ("--phone", "+7 912 345 67 89")):
        r = store("link", "vk_ivan", flag, value, "--json")
        assert r.exit_code == 4 and r.error["code"] == "conflict" and "anna" in r.error["message"]
    assert store("link", "vk_ivan", "--email", "ivan@example.com").exit_code == 0
    r = store("link", "anna", "--email", "ivan@example.com", "--no-verify", "--json")
    assert r.exit_code == 4 and r.error["code"] == "conflict" and "vk_ivan" in r.error["message"]


def test_social_identity_is_unique(store):
    social_only(store)
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("link", "anna", "--social", "VKontakte:555", "--json")
    assert r.exit_code == 4 and r.error["code"] == "conflict" and "vk_ivan" in r.error["message"]
    assert store("link", "anna", "--social", "google:777", "--json").json["changed"] is True
    assert store("link", "anna", "--social", "google:777", "--json").json["changed"] is False
    assert store("user", "show", "anna", "--json").json["social"] == ["google"]
    r = store("user", "add", "other", "--social", "google:777", "--no-password", "--json")
    assert r.exit_code == 4 and r.error["code"] == "conflict"


def test_link_usage_and_bad_input(store):
    social_only(store)
    assert store("link", "vk_ivan", "--json").exit_code == 2
    assert store("link", "vk_ivan", "--email", "a@b.c", "--phone", "+79123456789", "--json").exit_code == 2
    r = store("link", "vk_ivan", "--email", "not-an-address", "--json")
    assert r.exit_code == 5 and r.error["code"] == "invalid_email"
    r = store("link", "vk_ivan", "--phone", "12", "--json")
    assert r.exit_code == 5 and r.error["code"] == "invalid_phone"
    assert store("link", "nobody", "--email", "x@example.com", "--json").exit_code == 3
