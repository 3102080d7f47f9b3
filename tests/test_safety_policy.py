"""Issue 13 item 10: repetitive, sequential, repeated-word and login-repeating passwords are
refused (NIST SP 800-63B), each with its own violation code and message; long random passwords
and passphrases keep passing."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24recover.config import PolicySettings
from b24recover.services.policy import violations
from conftest import add_user

REFUSED = [
    ("aaaaaaaaaaaa", "", "repetitive"),
    (" " * 12, "", "repetitive"),
    ("aaaaaaaaaaaaaaaaaaaab", "", "repetitive"),
    ("123456789012", "", "sequential"),
    ("abcdefghijkl", "", "sequential"),
    ("ZYXWVUTSRQPO", "", "sequential"),
    ("1234abcd5678wxyz", "", "sequential"),
    ("passwordpassword", "", "repeated_word"),
    ("qwe1qwe1qwe1qwe1", "", "repeated_word"),
    ("h1h1h1h1h1h1", "h1", "repeats_login"),
    ("Xh1h1h1h1h1h1h1", "h1", "repeats_login"),
]


def codes(password: str, login: str = "") -> list[str]:
    return [v.code for v in violations(PolicySettings(), password, login=login)]


@pytest.mark.parametrize("password,login,code", REFUSED)
def test_each_pattern_has_its_own_code(password, login, code):
    assert code in codes(password, login)


def test_each_code_has_its_own_message():
    found = {}
    for password, login, code in REFUSED:
        for v in violations(PolicySettings(), password, login=login):
            found.setdefault(v.code, set()).add(v.message)
    messages = [next(iter(found[c])) for c in ("repetitive", "sequential", "repeated_word", "repeats_login")]
    assert len(set(messages)) == 4
    for password, _, _ in REFUSED:  # a message never quotes the password back
        assert not any(password.strip() and password in m for m in messages)


@pytest.mark.parametrize("password,login", [
    ("correct horse battery staple", ""),
    ("ледник тандем гобой фьорд", ""),
    ("aaah what a wonderful day 2024", ""),
    ("abc-Trumpet-7-violin-Zebra", ""),
    ("h1 stands for my first helmet", "h1"),
    ("correct horse battery staple " * 2, ""),  # a strong part twice is not "repeating to get long"
])
def test_real_passphrases_pass(password, login):
    assert codes(password, login) == []


ALPHABET = string.ascii_letters + string.digits + string.punctuation + "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_random_16_character_passwords_pass(seed):
    # Random as a generator draws them (hypothesis picks the seeds): st.text would try
    # "0000000000000000" on purpose, which is not a random password and is rightly refused.
    password = "".join(random.Random(seed).choices(ALPHABET, k=16))
    assert codes(password) == [], password


WORDS = ["trumpet", "glacier", "violin", "zebra", "harbour", "lantern", "meadow", "pepper", "quartz",
         "saddle", "thunder", "walnut", "ледник", "тандем", "гобой", "фьорд", "kompass", "nebel"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=3, max_size=6, unique=True), st.sampled_from([" ", "-", "."]))
def test_random_passphrases_pass(words, sep):
    assert codes(sep.join(words)) == []


def test_the_cli_refuses_them_with_the_codes(store):
    add_user(store, "h1")
    for password, login, code in REFUSED:
        r = store("reset", login or "h1", "--password-stdin", "--json", input=password + "\n")
        assert r.exit_code == 6 and r.error["code"] == "password_policy"
        assert code in [v["code"] for v in r.error["violations"]]
    shown = store("policy", "show", "--json").json
    assert {"repetitive", "sequential", "repeated_word", "repeats_login"} <= {r["code"] for r in shown["rules"]}
