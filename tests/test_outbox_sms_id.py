"""SMS and the stable message id: the id line of SMS outbox files, the id given to a `command`
or `http` gateway, and the minimal environment of the `command` program (SPEC §5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_delivery import http_gateway, sms_settings
from tokenhelp import outbox_dir, sms_parts

from b24recover.delivery.sms import send_sms
from conftest import GOOD_PASSWORD, add_user, connect_db

PHONE = "+79123456789"
NEW_PASSWORD = "a brand new passphrase 42"


def stored_ids(db_path) -> list[str]:
    with connect_db(db_path) as conn:
        return [m for (m,) in conn.execute("SELECT message_id FROM outbox ORDER BY id")]


def test_sms_file_has_to_first_then_the_message_id(store, db_path):
    add_user(store, "anna", "--phone", PHONE)
    r = store("token", "issue", "anna", "--via", "sms", "--json")
    assert r.exit_code == 0, r.stderr
    (path,) = (outbox_dir(db_path) / "sms").glob("*.txt")
    content = path.read_text(encoding="utf-8")
    lines = content.split("\n")
    (message_id,) = stored_ids(db_path)
    assert lines[:3] == [f"To: {PHONE}", f"Message-ID: <{message_id}>", ""]
    number, text, headers = sms_parts(content)
    assert number == PHONE and headers["Message-ID"] == f"<{message_id}>"
    assert any(ch.isdigit() for ch in text) and "Message-ID" not in text


def test_message_id_must_be_printable_ascii(tmp_path):
    from b24recover.delivery import DeliveryError

    with pytest.raises(DeliveryError):
        send_sms(sms_settings(tmp_path), PHONE, "t", message_id="a b\nTo: +1555")
    assert not (tmp_path / "b24.db.outbox" / "sms").exists()


def test_http_gateway_gets_the_message_id(tmp_path):
    with http_gateway(200, "ok") as (url, received):
        send_sms(sms_settings(tmp_path, transport="http", http_url=url), PHONE, "Код: 123456",
                 message_id="<b24recover.7.abc@portal.example.com>")
    assert received[0][3] == {"to": PHONE, "text": "Код: 123456", "message_id": "b24recover.7.abc@portal.example.com"}


def command_config(config_path: Path, dump: Path, extra_env: list[str]) -> None:
    program = dump.parent / "gateway.py"
    program.write_text(
        "import json, os, sys\n"
        f"with open({str(dump)!r}, 'w', encoding='utf-8') as f:\n"
        "    json.dump({'env': dict(os.environ), 'argv': sys.argv[1:], 'stdin': sys.stdin.read()}, f)\n",
        encoding="utf-8")
    config_path.write_text(
        'portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 4\n'
        '[mail]\nsmtp_password_env = "SMTP_PW"\n[portal]\npassword_env = "PORTAL_PW"\n'
        f'[sms]\ntransport = "command"\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(program))}]\n'
        f"command_env = {json.dumps(extra_env)}\n",
        encoding="utf-8")


def test_command_program_gets_a_minimal_environment(store, db_path, config_path, tmp_path, proc):
    add_user(store, "anna", "--phone", PHONE)
    dump = tmp_path / "env.json"
    # NEWPW is named in command_env, but this run reads the new password from it: still withheld.
    command_config(config_path, dump, ["GATEWAY_TOKEN", "NEWPW"])
    secrets = {"B24RECOVER_SECRET": "k" * 64, "NEWPW": NEW_PASSWORD, "SMTP_PW": "smtp-secret-1",
               "PORTAL_PW": "portal-secret-2"}
    plain = {"PATH": "/usr/bin:/bin", "LANG": "ru_RU.UTF-8", "LC_ALL": "ru_RU.UTF-8", "LC_MESSAGES": "C",
             "TZ": "Europe/Moscow", "HOME": str(tmp_path), "GATEWAY_TOKEN": "route-a", "UNRELATED": "x",
             "PYTHONPATH": "/nowhere"}
    r = proc("reset", "anna", "--password-env", "NEWPW", "--json", env={**secrets, **plain})
    assert r.exit_code == 0, r.stderr
    seen = json.loads(dump.read_text(encoding="utf-8"))
    env = seen["env"]
    (message_id,) = stored_ids(db_path)
    expected = {k: v for k, v in plain.items() if k not in ("UNRELATED", "PYTHONPATH")}
    assert {k: v for k, v in env.items() if not k.startswith("LC_")} == {
        **{k: v for k, v in expected.items() if not k.startswith("LC_")}, "B24RECOVER_MESSAGE_ID": message_id}
    assert env["LC_ALL"] == "ru_RU.UTF-8" and env["LC_MESSAGES"] == "C"
    for value in secrets.values():
        assert all(value not in v for v in env.values())
    assert seen["argv"] == [PHONE] and NEW_PASSWORD not in seen["stdin"]


@pytest.mark.parametrize("name", ["B24RECOVER_SECRET", "SMTP_PW", "PORTAL_PW", "NOT-A-NAME"])
def test_command_env_never_names_a_secret(store, config_path, tmp_path, name):
    command_config(config_path, tmp_path / "env.json", [name])
    r = store("outbox", "list", "--json")
    assert r.exit_code == 5 and r.error["code"] == "config_invalid"
    assert "command_env" in r.error["message"]


def test_password_read_from_env_is_withheld_even_in_process(tmp_path, monkeypatch):
    from b24recover.cli.secret_input import SecretInput
    from b24recover.delivery.sms import command_env

    monkeypatch.setenv("OPERATOR_PW", GOOD_PASSWORD)
    monkeypatch.setenv("KEEP_ME", "yes")
    settings = sms_settings(tmp_path, command_env=["OPERATOR_PW", "KEEP_ME"])
    assert command_env(settings, None)["OPERATOR_PW"] == GOOD_PASSWORD  # nothing read it yet
    assert SecretInput(env="OPERATOR_PW").from_env("the new password") == GOOD_PASSWORD
    env = command_env(settings, "m1")
    assert "OPERATOR_PW" not in env and env["KEEP_ME"] == "yes" and env["B24RECOVER_MESSAGE_ID"] == "m1"
