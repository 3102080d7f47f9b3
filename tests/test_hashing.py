"""Hashing never truncates: passwords equal in their first 72 bytes (bcrypt's input limit) and
different after never verify against each other, in any script, with emoji or NUL bytes."""

from __future__ import annotations

import sqlite3

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import add_user, connect_db
from b24recover.services.passwords import hash_password, scheme_of, verify_password

ROUNDS = 4
CYRILLIC = "съешьжеещёэтихмягкихфранцузскихбулок"  # 36 characters, 2 bytes each: 72 bytes


def pair(prefix: str, a: str, b: str) -> tuple[str, str]:
    assert len(prefix.encode("utf-8")) >= 72
    return prefix + a, prefix + b


CASES = {
    "ascii": pair("A" * 72, "x", "y"),
    "ascii-longer": ("p" * 72, "p" * 72 + "q"),
    # 64 Cyrillic characters are 128 bytes; the two differ only in the last character.
    "cyrillic-64": pair(CYRILLIC + "пароль" * 4 + "ыыы", "а", "б"),
    "cyrillic-72-bytes-then-more": pair(CYRILLIC, "ж", "з"),
    "emoji": pair("😀" * 18, "🙂", "🙃"),  # 18 x 4 bytes = 72
    "emoji-zwj": pair("👩‍👩‍👧‍👦" * 4, "👍", "👎"),  # family sequences: 25 bytes each
    "nul-after-72": pair("\x00" * 72, "a", "b"),
    "nul-inside": pair("abc\x00def" * 11, "\x00x", "\x00y"),
    "nul-suffix": ("x" * 80, "x" * 80 + "\x00"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_equal_first_72_bytes_do_not_verify_each_other(name):
    a, b = CASES[name]
    assert a != b and a.encode()[:72] == b.encode()[:72]
    hash_a, hash_b = hash_password(a, ROUNDS), hash_password(b, ROUNDS)
    assert verify_password(a, hash_a) and verify_password(b, hash_b)
    assert not verify_password(b, hash_a)
    assert not verify_password(a, hash_b)


def test_a_64_character_cyrillic_password_is_128_bytes_and_used_whole():
    a, b = CASES["cyrillic-64"]
    assert len(a) == 64 and len(a.encode("utf-8")) == 128
    stored = hash_password(a, ROUNDS)
    assert verify_password(a, stored) and not verify_password(b, stored)
    assert not verify_password(a[:-1], stored)


def test_nul_bytes_do_not_end_the_password():
    # A C string would stop at the NUL: "abc" and "abc\0anything" would be one password.
    stored = hash_password("abc\x00def", ROUNDS)
    assert verify_password("abc\x00def", stored)
    for other in ("abc", "abc\x00", "abc\x00deg", "\x00abc\x00def"):
        assert not verify_password(other, stored)


def test_new_hashes_are_bcrypt_sha256_v2_at_the_configured_cost():
    stored = hash_password("any password at all", ROUNDS)
    assert stored.startswith("$bcrypt-sha256$v=2,t=2b,r=4$")
    assert scheme_of(stored) == "bcrypt-sha256"


def test_256_characters_in_any_script_are_accepted():
    # 512 bytes of Cyrillic and 1024 bytes of emoji: bcrypt 5 itself refuses more than 72 bytes,
    # so these only work because bcrypt never sees the raw password.
    for password in ("ж" * 256, "🔑" * 256):
        stored = hash_password(password, ROUNDS)
        assert verify_password(password, stored)
        assert not verify_password(password[:-1] + "x", stored)


def test_plain_bcrypt_would_have_confused_them():
    """Why the pre-hash exists: raw bcrypt either cuts at 72 bytes or refuses the password."""
    a, b = CASES["cyrillic-64"]
    try:
        confused = bcrypt.checkpw(b.encode(), bcrypt.hashpw(a.encode(), bcrypt.gensalt(ROUNDS)))
    except ValueError:  # bcrypt >= 5 refuses inputs over 72 bytes
        confused = True
    assert confused


def test_imported_plain_bcrypt_refuses_a_longer_candidate():
    """An imported $2b$ hash only ever saw 72 bytes; a longer typed password cannot be it."""
    exact = ("ы" * 36).encode()
    stored = bcrypt.hashpw(exact, bcrypt.gensalt(ROUNDS)).decode()
    assert verify_password("ы" * 36, stored)
    assert not verify_password("ы" * 36 + "ы", stored)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None)
@given(prefix=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=72, max_size=100),
       tail_a=texts, tail_b=texts)
def test_property_suffixes_after_72_bytes_always_count(prefix, tail_a, tail_b):
    a, b = prefix + tail_a, prefix + tail_b
    if a == b:
        return
    assert not verify_password(b, hash_password(a, ROUNDS))


# ---- end to end: the same through the commands -------------------------------------------------

def test_cyrillic_long_password_through_user_add_and_passwd(store, db_path):
    a, b = CASES["cyrillic-64"]
    add_user(store, "olga", password=a)
    wrong = store("passwd", "olga", "--password-stdin", "--json", input=f"{b}\nновый длинный пароль 2024\n")
    assert wrong.exit_code == 6 and wrong.error["code"] == "password_incorrect"
    right = store("passwd", "olga", "--password-stdin", "--json", input=f"{a}\n{b}\n")
    assert right.exit_code == 0, right.stderr
    stored = connect_db(db_path).execute("SELECT password_hash FROM users").fetchone()[0]
    assert verify_password(b, stored) and not verify_password(a, stored)


def test_emoji_password_through_reset(store, db_path):
    # 72 bytes of varied emoji, then the difference: 18 times one emoji is a repetitive password,
    # which the policy refuses (issue 13 item 10)
    prefix = "😀😃😄😁" * 4 + "😆😅"
    assert len(prefix.encode()) == 72
    a, b = prefix + "🙂", prefix + "🙃"
    add_user(store, "emma")
    r = store("reset", "emma", "--password-stdin", "--json", input=a + "\n")
    assert r.exit_code == 0, r.stderr
    stored = connect_db(db_path).execute("SELECT password_hash FROM users").fetchone()[0]
    assert verify_password(a, stored) and not verify_password(b, stored)


def test_nul_byte_passwords_are_refused_by_the_policy_not_cut(store, db_path):
    add_user(store, "nina")
    before = connect_db(db_path).execute("SELECT password_hash FROM users").fetchone()[0]
    r = store("reset", "nina", "--password-stdin", "--json", input="a long enough pass\x00word\n")
    assert r.exit_code == 6 and r.error["code"] == "password_policy"
    assert "not_text" in [v["code"] for v in r.error["violations"]]
    assert connect_db(db_path).execute("SELECT password_hash FROM users").fetchone()[0] == before
