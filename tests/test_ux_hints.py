"""Messages and hints that say what is true and name only what applies (issue 9 drift list)."""

from __future__ import annotations

from conftest import add_user


def test_input_required_names_only_the_options_of_the_command(store):
    for argv, wanted, unwanted in [
        (("user", "add", "anna", "--json"), "--password-stdin", "--control-string-stdin"),
        (("reset", "anna", "--json"), "--password-stdin", "--control-string-stdin"),
        (("policy", "check", "--json"), "policy check", "--control-string-stdin"),
        (("redeem", "anna", "--json"), "--control-string-stdin", "--current-password-env"),
    ]:
        if argv[0] == "reset":
            add_user(store, "anna")
        r = store(*argv, input="")
        assert r.exit_code == 5 and r.error["code"] == "input_required", (argv, r.stderr)
        assert wanted in r.error["hint"] and unwanted not in r.error["hint"], (argv, r.error)


def test_no_phone_hint_says_number(store):
    add_user(store, "anna", "--email", "anna@example.com")
    r = store("token", "issue", "anna", "--via", "sms", "--json")
    assert r.error["code"] == "no_phone" and "--phone NUMBER" in r.error["hint"]


def test_policy_show_says_nist_defaults_only_for_the_defaults(store, config_path):
    assert "NIST defaults" in store("policy", "show").stdout
    config_path.write_text(config_path.read_text() + "[policy]\nPASSWORD_LENGTH = 8\n")
    title = store("policy", "show").stdout.splitlines()[0]
    assert "NIST" not in title and "PASSWORD_LENGTH = 8" in title


def test_import_summary_and_hint_follow_what_happened(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("login,email\nx1,not-an-email\nx2,also bad\n")
    r = store("user", "import", str(bad))
    assert r.exit_code == 5 and "Nothing imported" in r.stderr and "Imported:" not in r.stderr
    assert "Correct the lines" in r.stderr
    ok = tmp_path / "ok.csv"
    ok.write_text("login,email\nx3,x3@example.com\n")
    assert "Imported:" in store("user", "import", str(ok)).stderr
    r = store("user", "import", str(ok))
    assert "belongs to another account" in r.stderr and "--on-conflict skip" in r.stderr
    assert store("user", "import", str(ok), "--on-conflict", "skip", "--quiet").stderr == ""


def test_user_update_says_it_revoked_a_control_string(store):
    add_user(store, "anna", "--email", "anna@example.com")
    store("token", "issue", "anna", "--via", "email")
    r = store("user", "update", "anna", "--email", "anna.new@example.com")
    assert r.exit_code == 0 and "1 active control string(s) of anna revoked" in r.stderr
    assert store("user", "update", "anna", "--name", "Anna", "--json").json["revoked"] == 0
