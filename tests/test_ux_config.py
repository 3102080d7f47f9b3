"""Config discovery (SPEC §2), `config show` with sources, and config_invalid for every command (§3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, *args: str, env: dict | None = None, input: str | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("B24RECOVER_", "XDG_CONFIG"))}
    full.update(HOME=str(cwd / "home"), **(env or {}))
    done = subprocess.run([sys.executable, "-m", "b24recover", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, input=input, timeout=60)
    return done


def show(cwd: Path, *args: str, env: dict | None = None) -> dict:
    done = run(cwd, *args, "config", "show", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_discovery_order(tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "b24recover").mkdir(parents=True)
    (xdg / "b24recover" / "b24recover.toml").write_text('default_lang = "de"\n')
    body = show(tmp_path, env={"XDG_CONFIG_HOME": str(xdg)})
    assert body["config_file"] == str(xdg / "b24recover" / "b24recover.toml")
    assert body["settings"]["default_lang"] == {"value": "de", "source": f"{xdg}/b24recover/b24recover.toml:1"}
    # ~/.config when XDG_CONFIG_HOME is unset
    home_cfg = tmp_path / "home" / ".config" / "b24recover"
    home_cfg.mkdir(parents=True)
    (home_cfg / "b24recover.toml").write_text('\ndefault_lang = "pt"\n')
    assert show(tmp_path)["settings"]["default_lang"]["value"] == "pt"
    # ./b24recover.toml comes before both
    (tmp_path / "b24recover.toml").write_text('# local\n\ndefault_lang = "it"\n')
    body = show(tmp_path, env={"XDG_CONFIG_HOME": str(xdg)})
    assert body["settings"]["default_lang"] == {"value": "it", "source": "b24recover.toml:3"}
    # B24RECOVER_CONFIG before that, --config before the environment
    other = tmp_path / "other.toml"
    other.write_text('default_lang = "ru"\n')
    body = show(tmp_path, env={"B24RECOVER_CONFIG": str(other)})
    assert body["settings"]["default_lang"]["value"] == "ru" and body["config_source"] == "env B24RECOVER_CONFIG"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('default_lang = "en"\n')
    body = show(tmp_path, "--config", str(explicit), env={"B24RECOVER_CONFIG": str(other)})
    assert body["config_file"] == str(explicit) and body["config_source"] == "--config"


def test_config_show_sources_and_redaction(tmp_path):
    (tmp_path / "b24recover.toml").write_text(
        'portal_url = "https://portal.example.org"\n'
        "[tokens]\n"
        'link_ttl = "2h"\n'
        "[policy]\n"
        "CHECKWORD_TIMEOUT = 30\n"
        "[sms]\n"
        'transport = "http"\n'
        'http_url = "https://gwuser:s3cr3tkey@sms.example.com/send"\n'
        "[mail]\n"
        'smtp_password_env = "SMTP_PW"\n')
    body = show(tmp_path, "--db", "x.db", env={"B24RECOVER_ACTOR": "anna.admin", "SMTP_PW": "hunter2hunter2"})
    s = body["settings"]
    assert s["portal_url"] == {"value": "https://portal.example.org", "source": "b24recover.toml:1"}
    assert s["tokens.link_ttl"] == {"value": "30m", "source": "b24recover.toml:5"}  # CHECKWORD_TIMEOUT wins, later
    assert s["tokens.code_ttl"] == {"value": "10m", "source": "default"}
    assert s["actor"] == {"value": "anna.admin", "source": "env B24RECOVER_ACTOR"}
    assert s["sms.http_url"]["value"] == "https://***@sms.example.com/send"
    assert s["mail.smtp_password_env"]["value"] == "SMTP_PW"
    assert body["store"] == {"value": "x.db", "source": "--db"}
    text = run(tmp_path, "config", "show", env={"SMTP_PW": "hunter2hunter2"}).stdout
    assert "s3cr3tkey" not in text and "hunter2" not in text and "gwuser" not in text
    assert "tokens.link_ttl" in text and "b24recover.toml:5" in text
    defaults = json.loads(run(tmp_path, "config", "show", "--defaults", "--json").stdout)
    assert defaults["config_file"] is None and defaults["settings"]["portal_url"]["source"] == "default"
    assert set(defaults["settings"]) == set(s)


BAD = [
    ('[tokens]\nlink_ttl = 5\n', "tokens.link_ttl"),
    ('[tokens]\nlink_ttl = "5"\n', "tokens.link_ttl"),
    ('[tokens]\ncode_ttl = "-5m"\n', "tokens.code_ttl"),
    ('[tokens]\nretention = "0s"\n', "tokens.retention"),
    ('portal_url = "not a url"\n', "portal_url"),
    ('portal_url = "ftp://portal.example.com"\n', "portal_url"),
    ('default_country = "ZZ"\n', "default_country"),
    ('[tokens]\nlink_template = "{portal_url.__class__.__mro__}{control_string}"\n', "tokens.link_template"),
    ('[tokens]\nlink_template = "{portal_url}/x?c={control_string}&{0}"\n', "tokens.link_template"),
    ('[tokens]\nlink_template = "{portal_url}/x?c={control_string!r}"\n', "tokens.link_template"),
    ('[tokens]\nlink_template = "{portal_url}/x?c={control_string"\n', "tokens.link_template"),
    ('[policy]\nCHECKWORD_TIMEOUT = "abc"\n', "policy.CHECKWORD_TIMEOUT"),
    ('[tokens]\ncode_attempts = 0\n', "tokens.code_attempts"),
    ('[mail]\nsmtp_port = 70000\n', "mail.smtp_port"),
    ('[tokens]\nnope = 1\n', "tokens.nope"),
    ('[hashing]\nbcrypt_rounds = "12"\n', "hashing.bcrypt_rounds"),
]
COMMANDS = [["lookup", "anna"], ["token", "request", "anna"], ["user", "list"], ["policy", "show"], ["init"],
            ["config", "show"], ["outbox", "send"], ["audit", "log"]]


@pytest.mark.parametrize("body, key", BAD, ids=[k + ":" + b.split("\n")[-2][:30] for b, k in BAD])
def test_bad_config_is_config_invalid_for_every_command(tmp_path, body, key):
    config = tmp_path / "bad.toml"
    config.write_text("# the portal\n" + body, encoding="utf-8")
    for argv in COMMANDS:
        done = run(tmp_path, "--config", str(config), *argv, "--json")
        assert done.returncode == 5, (argv, done.stderr)
        error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
        assert error["code"] == "config_invalid" and error["key"] == key and error["file"] == str(config), error
        assert f"{config}:" in error["message"] and key in error["message"]
        assert "examples/" not in error["hint"] and "config show" in error["hint"]
    plain = run(tmp_path, "--config", str(config), "user", "list")
    assert plain.returncode == 5 and f"{config}:" in plain.stderr and "Traceback" not in plain.stderr


def test_a_missing_explicit_config_is_named(tmp_path):
    done = run(tmp_path, "--config", str(tmp_path / "nope.toml"), "lookup", "x", "--json")
    error = json.loads(done.stderr)["error"]
    assert done.returncode == 5 and error["code"] == "config_invalid" and "nope.toml" in error["message"]


def test_good_config_values_still_work(tmp_path):
    (tmp_path / "b24recover.toml").write_text(
        'default_country = "DE"\n[tokens]\nlink_ttl = "1h30m"\n'
        'link_template = "{portal_url}/r?w={control_string}&l={login}&x={lang}&lit={{braces}}"\n')
    s = show(tmp_path)["settings"]
    assert s["tokens.link_ttl"]["value"] == "90m" and s["default_country"]["value"] == "DE"
