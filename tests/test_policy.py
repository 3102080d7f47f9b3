"""The password policy: each validator, Bitrix rules and presets, and `policy show` / `policy check`."""

from __future__ import annotations

import hashlib
import hmac
import json
import string

import pytest

from conftest import GOOD_PASSWORD, add_user
from tokenhelp import beside_store

from b24recover.config import PolicySettings, load_settings
from b24recover.errors import B24Error, ExitCode
from b24recover.services import common_passwords
from b24recover.services.policy import (
    BITRIX_KEYS, PRESETS, Violation, describe, effective, enforce, history_digest, strength, violations,
)

KEY = b"k" * 32
STRONG = "glacier tandem oboe fjord"  # 25 characters, no classes forced by default


def codes(policy, password, **kw) -> list[str]:
    return [v.code for v in violations(policy, password, **kw)]


def write_policy(config_path, body: str) -> None:
    config_path.write_text(config_path.read_text(encoding="utf-8") + "[policy]\n" + body, encoding="utf-8")


# ---- length ---------------------------------------------------------------------------------------

def test_defaults_are_the_nist_ones():
    p = effective(PolicySettings())
    assert (p.PASSWORD_LENGTH, p.max_length, p.PASSWORD_UNIQUE_COUNT) == (12, 256, 5)
    assert not any((p.PASSWORD_UPPERCASE, p.PASSWORD_LOWERCASE, p.PASSWORD_DIGITS, p.PASSWORD_PUNCTUATION))


def test_minimum_length_counts_characters_not_bytes():
    policy = PolicySettings()
    assert codes(policy, "glacier tan") == ["too_short"]  # 11
    assert codes(policy, "glacier tand") == []  # 12
    assert codes(policy, "ледниктанде") == ["too_short"]  # 11 Cyrillic letters, 22 bytes
    assert codes(policy, "ледниктандем") == []


def test_too_short_message_says_what_to_do():
    [v] = violations(PolicySettings(), "short")
    assert v == Violation("too_short", "use at least 12 characters")


def test_256_characters_accepted_257_refused():
    base = "ледник-тандем-гобой-фьорд-" * 10  # any script, long
    assert len(base[:256]) == 256
    assert codes(PolicySettings(), base[:256]) == []
    assert codes(PolicySettings(), base[:257]) == ["too_long"]
    [v] = violations(PolicySettings(), base[:257])
    assert v.message == "use at most 256 characters"


def test_a_64_character_cyrillic_password_is_accepted():
    password = ("ЁлкаПалкаСкакалка" * 4)[:64]
    assert len(password.encode("utf-8")) > 72  # past bcrypt's own limit
    assert codes(PolicySettings(), password) == []


# ---- character classes -----------------------------------------------------------------------------

ALL_CLASSES = PolicySettings(PASSWORD_UPPERCASE=True, PASSWORD_LOWERCASE=True, PASSWORD_DIGITS=True,
                             PASSWORD_PUNCTUATION=True)


@pytest.mark.parametrize("password, missing", [
    ("glacier tandem oboe 7!", "needs_uppercase"),
    ("GLACIER TANDEM OBOE 7!", "needs_lowercase"),
    ("Glacier tandem oboe x!", "needs_digit"),
    ("Glacier tandem oboe 77", "needs_punctuation"),
])
def test_each_character_class(password, missing):
    assert codes(ALL_CLASSES, password) == [missing]


def test_all_classes_missing_are_all_listed():
    # 12 spaces are also repetitive (issue 13 item 10), listed after the classes
    assert codes(ALL_CLASSES, " " * 12) == ["needs_uppercase", "needs_lowercase", "needs_digit",
                                            "needs_punctuation", "repetitive"]


def test_classes_not_required_by_default():
    assert codes(PolicySettings(), "glacier tandem oboe") == []


def test_classes_count_letters_and_digits_of_any_script():
    assert codes(ALL_CLASSES, "Ледник тандем гобой ٣!") == []  # Cyrillic letters, Arabic-Indic digit


@pytest.mark.parametrize("mark", list(string.punctuation))
def test_every_bitrix_special_character_counts_as_punctuation(mark):
    policy = PolicySettings(PASSWORD_PUNCTUATION=True)
    assert codes(policy, "glacier tandem oboe" + mark) == []


def test_class_messages_are_instructions():
    messages = {v.code: v.message for v in violations(ALL_CLASSES, " " * 12)}
    assert messages["needs_uppercase"] == "add an uppercase letter"
    assert messages["needs_digit"] == "add a digit"


# ---- common passwords ------------------------------------------------------------------------------

def test_common_list_is_large_and_from_zxcvbn():
    assert common_passwords.count() >= 10_000
    assert "password" in common_passwords.common_passwords()


@pytest.mark.parametrize("password", [
    "qwerty123456", "QWERTY123456", "QwErTy123456", "LeaveMeAlone",
                                      "1qaz2wsx3edc"])
def test_common_passwords_refused_in_any_case(password):
    assert codes(PolicySettings(), password) == ["common"]


def test_common_check_applies_to_short_presets_too():
    low = PolicySettings(preset="low")
    assert codes(low, "password") == ["common"]
    assert codes(low, "Dragon") == ["common"]
    assert codes(low, "fjord7x") == []


def test_uncommon_password_is_not_refused():
    assert "common" not in codes(PolicySettings(), "qwerty123456 fjord")


# ---- similarity to the account ---------------------------------------------------------------------

ACCOUNT = {"login": "anna.k", "name": "Anna", "last_name": "Ivanova", "email": "a.ivanova-work@example.com"}


@pytest.mark.parametrize("password, field", [
    ("my login is anna.k!!", "login"),
    ("hello ANNA from here", "name"),
    ("ivanova glacier oboe", "last name"),
    ("xx-ivanova-work-2024", "last name"),  # also the email's word, but the last name is named first
    ("fjord IVANOVA-WORK oboe", "last name"),
])
def test_account_details_inside_the_password(password, field):
    [v] = violations(PolicySettings(), password, **ACCOUNT)
    assert v.code == "similar_to_account"
    assert field in v.message


def test_email_local_part_and_its_words():
    account = {"login": "u1", "email": "tundra.walrus@example.com"}
    assert codes(PolicySettings(), "glacier walrus oboe", **account) == ["similar_to_account"]
    assert codes(PolicySettings(), "TUNDRA.WALRUS.1234", **account) == ["similar_to_account"]
    [v] = violations(PolicySettings(), "glacier walrus oboe", **account)
    assert v.message == "keep your email out of the password"


def test_reversed_account_details_are_refused():
    assert codes(PolicySettings(), "avonavi glacier oboe", **ACCOUNT) == ["similar_to_account"]


def test_password_contained_in_an_account_detail():
    account = {"login": "glacier-tandem-oboe-fjord-ranger"}
    assert codes(PolicySettings(), "tandem-oboe-fjord", **account) == ["similar_to_account"]


def test_several_fields_are_named_once_each():
    [v] = violations(PolicySettings(), "anna ivanova 2024", **ACCOUNT)
    assert v.message == "keep your login, name, last name and email out of the password"
    [v] = violations(PolicySettings(), "anna ivanova 2024", name="Anna", last_name="Ivanova")
    assert v.message == "keep your name and last name out of the password"


def test_short_account_parts_are_ignored():
    # "al" and "bo" are too short to mean anything; the words of 3+ characters still count.
    assert codes(PolicySettings(), "glacier tandem oboe al bo", login="al", name="Bo") == []


def test_no_account_no_similarity():
    assert codes(PolicySettings(), STRONG) == []


# ---- history ---------------------------------------------------------------------------------------

def test_history_digest_is_hmac_sha256_hex():
    digest = history_digest(KEY, "пароль")
    assert digest == hmac.new(KEY, "пароль".encode(), hashlib.sha256).hexdigest()
    assert len(digest) == 64 and digest != hashlib.sha256("пароль".encode()).hexdigest()


def test_reuse_of_a_recent_password_is_refused():
    history = [history_digest(KEY, f"old password {i:02d}") for i in range(5)]
    assert codes(PolicySettings(), "old password 04", history=history, key=KEY) == ["reused"]
    [v] = violations(PolicySettings(), "old password 00", history=history, key=KEY)
    assert v.message == "choose a password different from your last 5"


def test_only_the_last_unique_count_entries_are_checked():
    history = [history_digest(KEY, f"old password {i:02d}") for i in range(6)]  # newest first
    policy = PolicySettings(PASSWORD_UNIQUE_COUNT=2)
    assert codes(policy, "old password 01", history=history, key=KEY) == ["reused"]
    assert codes(policy, "old password 02", history=history, key=KEY) == []


def test_history_with_another_key_does_not_match():
    history = [history_digest(KEY, STRONG)]
    assert codes(PolicySettings(), STRONG, history=history, key=b"x" * 32) == []


def test_unique_count_zero_turns_the_history_off():
    history = [history_digest(KEY, STRONG)]
    assert codes(PolicySettings(PASSWORD_UNIQUE_COUNT=0), STRONG, history=history, key=KEY) == []


def test_history_without_the_key_is_a_programming_error():
    with pytest.raises(ValueError):
        violations(PolicySettings(), STRONG, history=["00" * 32])


# ---- characters nobody can type --------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\t", "\x85"])
def test_control_characters_are_refused(char):
    assert codes(PolicySettings(), "glacier tandem" + char + "oboe") == ["not_text"]


def test_spaces_emoji_and_other_scripts_are_allowed():
    assert codes(PolicySettings(), "горный 🦊 漢字 glacier") == []


# ---- presets and Bitrix names ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["low", "middle", "high"])
def test_presets_apply_bitrix_values(name):
    p = effective(PolicySettings(preset=name))
    assert {k: getattr(p, k) for k in BITRIX_KEYS} == PRESETS[name]


def test_preset_values_are_those_of_bitrix():
    assert PRESETS["low"]["PASSWORD_LENGTH"] == 6 and PRESETS["low"]["PASSWORD_UNIQUE_COUNT"] == 0
    assert (PRESETS["middle"]["PASSWORD_LENGTH"], PRESETS["middle"]["PASSWORD_PUNCTUATION"]) == (8, False)
    assert (PRESETS["high"]["PASSWORD_LENGTH"], PRESETS["high"]["PASSWORD_PUNCTUATION"]) == (10, True)


def test_medium_is_an_alias_of_middle_and_case_does_not_matter():
    assert effective(PolicySettings(preset="Medium")).PASSWORD_LENGTH == 8
    assert effective(PolicySettings(preset="HIGH")).preset == "high"


def test_high_preset_refuses_what_bitrix_refuses():
    high = PolicySettings(preset="high")
    assert codes(high, "glacierTandem7") == ["needs_punctuation"]
    assert codes(high, "Glacier-7") == ["too_short"]
    assert codes(high, "Glacier-Tand7") == []


def test_explicit_key_overrides_the_preset():
    assert effective(PolicySettings(preset="high", PASSWORD_LENGTH=16)).PASSWORD_LENGTH == 16
    # A key written with the default's value still wins when the loader records it as written.
    policy = PolicySettings(preset="high", PASSWORD_UNIQUE_COUNT=5)
    policy.explicit = frozenset({"PASSWORD_UNIQUE_COUNT"})
    p = effective(policy)
    assert (p.PASSWORD_UNIQUE_COUNT, p.PASSWORD_LENGTH, p.PASSWORD_PUNCTUATION) == (5, 10, True)


def test_effective_is_idempotent():
    p = effective(PolicySettings(preset="middle", PASSWORD_DIGITS=False))
    assert effective(p) == p
    assert p.PASSWORD_DIGITS is True  # False is the default's value: without a record it is not "written"


@pytest.mark.parametrize("settings, fragment", [
    (PolicySettings(preset="extreme"), "preset"),
    (PolicySettings(PASSWORD_LENGTH=0), "PASSWORD_LENGTH"),
    (PolicySettings(PASSWORD_LENGTH=300), "PASSWORD_LENGTH"),
    (PolicySettings(max_length=128), "max_length"),
    (PolicySettings(PASSWORD_UNIQUE_COUNT=-1), "PASSWORD_UNIQUE_COUNT"),
])
def test_impossible_policies_are_config_errors(settings, fragment):
    with pytest.raises(B24Error) as err:
        effective(settings)
    assert err.value.code == "config_invalid" and fragment in err.value.message


@pytest.mark.parametrize("key, value, password, code", [
    ("PASSWORD_LENGTH", "20", "glacier tandem oboe", "too_short"),
    ("PASSWORD_UPPERCASE", "true", STRONG, "needs_uppercase"),
    ("PASSWORD_LOWERCASE", "true", STRONG.upper(), "needs_lowercase"),
    ("PASSWORD_DIGITS", "true", STRONG, "needs_digit"),
    ("PASSWORD_PUNCTUATION", "true", STRONG, "needs_punctuation"),
])
def test_each_bitrix_rule_by_name_in_the_config(tmp_path, key, value, password, code):
    config = tmp_path / "c.toml"
    config.write_text(f"[policy]\n{key} = {value}\n", encoding="utf-8")
    settings = load_settings(str(config), str(tmp_path / "db"))
    assert codes(settings.policy, password) == [code]


def test_unique_count_by_name_in_the_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[policy]\nPASSWORD_UNIQUE_COUNT = 1\n", encoding="utf-8")
    policy = load_settings(str(config), str(tmp_path / "db")).policy
    history = [history_digest(KEY, "newest password"), history_digest(KEY, STRONG)]
    assert codes(policy, STRONG, history=history, key=KEY) == []
    assert codes(policy, "newest password", history=history, key=KEY) == ["reused"]


# ---- enforce ---------------------------------------------------------------------------------------

def test_enforce_lists_every_violation():
    with pytest.raises(B24Error) as err:
        enforce(ALL_CLASSES, "anna", login="anna")
    exc = err.value
    assert exc.code == "password_policy" and exc.exit_code == ExitCode.REFUSED
    found = [v["code"] for v in exc.details["violations"]]
    assert found == ["too_short", "needs_uppercase", "needs_digit", "needs_punctuation", "similar_to_account"]
    assert "use at least 12 characters" in exc.message and "add a digit" in exc.message
    assert "anna" not in exc.message  # the password is never repeated back


def test_enforce_accepts_a_good_password():
    enforce(PolicySettings(), STRONG, login="anna", name="Anna", history=[history_digest(KEY, "x")], key=KEY)


# ---- strength --------------------------------------------------------------------------------------

def test_strength_of_a_weak_and_a_strong_password():
    weak = strength("password1")
    assert weak["score"] == 0 and weak["warning"] and weak["suggestions"]
    strong = strength(GOOD_PASSWORD)
    assert strong["score"] == 4 and strong["crack_time"] == "centuries"
    assert set(strong) >= {"score", "crack_time", "warning", "suggestions"}


def test_strength_uses_the_account_details():
    plain = strength("tundrawalrus1984")["guesses_log10"]
    assert strength("tundrawalrus1984", ["tundra.walrus@example.com"])["guesses_log10"] < plain
    assert strength("ivanova1984", ["Ivanova"])["guesses_log10"] < strength("ivanova1984")["guesses_log10"]


def test_strength_of_a_long_password_analyses_a_bounded_prefix():
    result = strength("ледник-тандем-гобой-" * 13)
    assert result["analysed_length"] == 72 and result["score"] == 4


def test_strength_of_an_empty_password():
    empty = strength("")
    assert empty["score"] == 0 and empty["suggestions"] and empty["analysed_length"] == 0


def test_describe_names_every_rule():
    view = describe(PolicySettings(preset="middle"))
    assert view["preset"] == "middle"
    assert view["bitrix"] == PRESETS["middle"]
    names = {r["bitrix_name"] for r in view["rules"]}
    assert set(BITRIX_KEYS) <= names
    assert {r["code"] for r in view["rules"]} >= {"too_short", "too_long", "common", "similar_to_account",
                                                   "reused", "not_text"}


# ---- policy show -----------------------------------------------------------------------------------

def test_policy_show_json_lists_the_bitrix_names(cli):
    r = cli("policy", "show", "--json")
    assert r.exit_code == 0, r.stderr
    view = r.json
    assert view["preset"] is None
    assert view["bitrix"] == {"PASSWORD_LENGTH": 12, "PASSWORD_UPPERCASE": False, "PASSWORD_LOWERCASE": False,
                              "PASSWORD_DIGITS": False, "PASSWORD_PUNCTUATION": False, "PASSWORD_UNIQUE_COUNT": 5}
    assert view["max_length"] == 256
    assert {r["bitrix_name"] for r in view["rules"]} >= set(BITRIX_KEYS)


def test_policy_show_text_without_a_store(cli, db_path):
    r = cli("policy", "show")
    assert r.exit_code == 0, r.stderr
    assert "NIST defaults" in r.stdout
    for name in BITRIX_KEYS:
        assert name in r.stdout
    assert "at least 12 characters" in r.stdout
    assert not db_path.exists()


def test_policy_show_with_a_preset_and_an_override(cli, config_path):
    write_policy(config_path, 'preset = "high"\nPASSWORD_LENGTH = 14\n')
    view = cli("policy", "show", "--json").json
    assert view["preset"] == "high"
    assert view["bitrix"] == {**PRESETS["high"], "PASSWORD_LENGTH": 14}
    assert "Bitrix preset 'high'" in cli("policy", "show").stdout


@pytest.mark.parametrize("name", ["low", "middle", "high"])
def test_policy_show_each_preset(cli, config_path, name):
    write_policy(config_path, f'preset = "{name}"\n')
    assert cli("policy", "show", "--json").json["bitrix"] == PRESETS[name]


@pytest.mark.parametrize("key, value", [("PASSWORD_LENGTH", 9), ("PASSWORD_UPPERCASE", True),
                                        ("PASSWORD_LOWERCASE", True), ("PASSWORD_DIGITS", True),
                                        ("PASSWORD_PUNCTUATION", True), ("PASSWORD_UNIQUE_COUNT", 2)])
def test_policy_show_each_bitrix_name(cli, config_path, key, value):
    write_policy(config_path, f"{key} = {json.dumps(value)}\n")
    assert cli("policy", "show", "--json").json["bitrix"][key] == value


def test_unknown_preset_is_a_config_error(cli, config_path):
    write_policy(config_path, 'preset = "paranoid"\n')
    r = cli("policy", "show", "--json")
    assert r.exit_code == 5 and r.error["code"] == "config_invalid"


# ---- policy check ----------------------------------------------------------------------------------

def test_policy_check_accepts_a_good_password(cli):
    r = cli("policy", "check", "--json", input=STRONG + "\n")
    assert r.exit_code == 0, r.stderr
    assert r.json["ok"] is True and r.json["violations"] == []
    assert 0 <= r.json["strength"]["score"] <= 4
    assert STRONG not in r.stdout + r.stderr


def test_policy_check_refuses_with_every_violation(cli, config_path):
    write_policy(config_path, "PASSWORD_DIGITS = true\n")
    r = cli("policy", "check", "--json", input="qwerty\n")
    assert r.exit_code == 6
    assert r.json["ok"] is False
    assert [v["code"] for v in r.json["violations"]] == ["too_short", "needs_digit", "common"]
    assert r.json["strength"]["score"] == 0 and r.json["strength"]["suggestions"]
    assert r.error["code"] == "password_policy"
    assert [v["code"] for v in r.error["violations"]] == ["too_short", "needs_digit", "common"]
    assert "qwerty" not in r.stderr


def test_policy_check_text_output(cli):
    r = cli("policy", "check", input="LeaveMeAlone\n")
    assert r.exit_code == 6
    assert "does not meet the policy" in r.stdout
    assert "choose a less common password" in r.stdout
    assert "Strength: " in r.stdout and "Tip: " in r.stdout
    assert "error: the password does not meet the policy" in r.stderr
    assert "LeaveMeAlone" not in r.stdout + r.stderr

    ok = cli("policy", "check", input=STRONG + "\n")
    assert ok.exit_code == 0 and "meets the policy" in ok.stdout and STRONG not in ok.stdout


def test_policy_check_reads_only_the_first_line(cli):
    r = cli("policy", "check", "--json", input=STRONG + "\nshort\n")
    assert r.exit_code == 0 and r.json["ok"] is True


def test_policy_check_256_and_257_characters(cli):
    base = "glacier-tandem-oboe-fjord-" * 10
    assert cli("policy", "check", "--json", input=base[:256] + "\n").exit_code == 0
    r = cli("policy", "check", "--json", input=base[:257] + "\n")
    assert r.exit_code == 6 and [v["code"] for v in r.json["violations"]] == ["too_long"]


def test_policy_check_non_utf8_stdin(cli):
    r = cli("policy", "check", "--json", input=b"\xff\xfegarbage\n")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input"


def test_policy_check_empty_stdin(cli):
    r = cli("policy", "check", "--json", input="")
    assert r.exit_code == 5 and r.error["code"] == "input_required"


def test_policy_check_nul_byte(cli):
    r = cli("policy", "check", "--json", input=b"glacier tandem\x00oboe\n")
    assert r.exit_code == 6 and [v["code"] for v in r.json["violations"]] == ["not_text"]


def test_policy_check_with_login_uses_the_account(store):
    add_user(store, "anna", "--email", "tundra.walrus@example.com", "--name", "Anna", "--last-name", "Ivanova")
    r = store("policy", "check", "--login", "anna", "--json", input="glacier walrus oboe\n")
    assert r.exit_code == 6
    assert r.json["login"] == "anna"
    assert [v["code"] for v in r.json["violations"]] == ["similar_to_account"]
    assert store("policy", "check", "--login", "anna", "--json", input=STRONG + "\n").exit_code == 0


def test_policy_check_with_login_checks_the_history(store, db_path):
    from b24recover.store import users as user_store
    from b24recover.store.db import open_store
    from b24recover.store.keyfile import load_key

    add_user(store, "anna")
    key = load_key(beside_store(db_path, ".key"))
    db = open_store(db_path)  # either engine's store
    try:
        with db.write() as conn:
            row = conn.execute("SELECT id FROM users WHERE login = 'anna'").fetchone()
            user_store.add_history(conn, row["id"], history_digest(key, STRONG), 1, 5)
    finally:
        db.close()
    r = store("policy", "check", "--login", "anna", "--json", input=STRONG + "\n")
    assert r.exit_code == 6 and [v["code"] for v in r.json["violations"]] == ["reused"]


def test_policy_check_unknown_login(store):
    r = store("policy", "check", "--login", "nobody", "--json", input=STRONG + "\n")
    assert r.exit_code == 3 and r.error["code"] == "not_found"


def test_policy_check_as_a_real_process(proc):
    r = proc("policy", "check", "--json", input="Password123\n")
    assert r.exit_code == 6, r.stderr
    assert json.loads(r.stdout)["ok"] is False
    assert json.loads(r.stderr.strip().splitlines()[-1])["error"]["code"] == "password_policy"
    ok = proc("policy", "check", input=STRONG + "\n")
    assert ok.exit_code == 0 and STRONG not in ok.stdout + ok.stderr


def test_shipped_common_password_list_is_zxcvbns():
    from b24recover.services import common_passwords as cp

    shipped = cp.LIST_FILE.read_text(encoding="utf-8").splitlines()
    assert shipped == cp.from_zxcvbn()
    assert len(shipped) >= 10_000
