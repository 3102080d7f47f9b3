"""`diagnose` findings and hints agree with the state (issue 13 item 8): after `link X --email A`
and then `link X --phone P --no-verify` the email's control string is revoked, so the email is no
longer pending, and every command diagnose suggests actually works."""

from __future__ import annotations

import re

from conftest import add_user

PHONE = "+79123456789"


def suggested_commands(findings) -> list[list[str]]:
    """The runnable `b24recover token issue ...` commands in the findings' actions."""
    out = []
    for f in findings:
        for m in re.finditer(r"b24recover (token issue \S+ --via \w+(?: --force)?)", f["action"]):
            out.append(m.group(1).split())
    return out


def test_pending_email_ends_when_its_control_string_is_revoked(store, clock):
    assert store("user", "add", "vk.ivan", "--social", "vkontakte:42", "--no-password").exit_code == 0
    linked = store("link", "vk.ivan", "--email", "ivan@example.com", "--json")
    assert linked.exit_code == 0 and linked.json["state"] == "pending"
    r = store("link", "vk.ivan", "--phone", PHONE, "--no-verify", "--json")
    assert r.exit_code == 0 and r.json["state"] == "linked"

    shown = store("user", "show", "vk.ivan", "--json").json
    assert shown["pending"] == [] and shown["phone"] == PHONE
    states = [t["state"] for t in store("token", "list", "vk.ivan", "--json").json["control_strings"]]
    assert states == ["revoked"]

    findings = store("diagnose", "vk.ivan", "--json").json["findings"]
    codes = [f["code"] for f in findings]
    assert "pending_link" not in codes
    assert not any("--via email" in f["action"] for f in findings)  # no email on file
    commands = suggested_commands(findings)
    assert commands, findings
    for command in commands:  # refused now only for a reason diagnose itself reported
        run = store(*command, "--json")
        assert run.exit_code == 0 or run.error["code"] in codes, (command, run.stderr)
    for command in commands:  # and each works once nothing stands in the way
        clock.advance(61)
        run = store(*command, "--json")
        assert run.exit_code == 0, (command, run.stderr)


def test_resending_to_a_pending_address_keeps_it_pending(store):
    assert store("user", "add", "vk.ivan", "--social", "vkontakte:42", "--no-password").exit_code == 0
    assert store("link", "vk.ivan", "--email", "ivan@example.com").exit_code == 0
    again = store("link", "vk.ivan", "--email", "ivan@example.com", "--json")
    assert again.exit_code == 0 and again.json["state"] == "pending"
    assert store("user", "show", "vk.ivan", "--json").json["pending"] == ["ivan@example.com"]
    findings = store("diagnose", "vk.ivan", "--json").json["findings"]
    assert "pending_link" in [f["code"] for f in findings]


def test_a_new_recovery_string_ends_the_pending_address(store):
    add_user(store, "anna", "--phone", PHONE)
    assert store("link", "anna", "--email", "anna@example.com").exit_code == 0
    assert store("token", "issue", "anna", "--via", "sms", "--force", "--json").exit_code == 0
    assert store("user", "show", "anna", "--json").json["pending"] == []
    findings = store("diagnose", "anna", "--json").json["findings"]
    assert "pending_link" not in [f["code"] for f in findings]
    issue = store("token", "issue", "anna", "--via", "email", "--force", "--json")
    assert issue.exit_code == 4 and issue.error["code"] == "no_email"  # not a pending_link dead end
