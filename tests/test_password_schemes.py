"""services/passwords.py against independent implementations and the exact edges of each
scheme (found by `make mutants`): passlib (libpass) for bcrypt-sha256, pyca/bcrypt for imported
plain bcrypt, and hand-made strings for the boundaries of scheme recognition."""

from __future__ import annotations

import hashlib

import bcrypt
import pytest
from passlib.hash import bcrypt_sha256, sha512_crypt

from b24recover.services import passwords as pw

HEX32 = "0123456789abcdef" * 2
CYRILLIC_64 = "пароль" * 10 + "абвг"  # 64 characters, 128 bytes


@pytest.mark.parametrize("stored, scheme", [
    (None, None), ("", None),
    ("$bcrypt-sha256$v=2,t=2b,r=4$" + "a" * 22 + "$" + "b" * 31, "bcrypt-sha256"),
    ("$2a$04$" + "a" * 53, "bcrypt"), ("$2b$04$" + "a" * 53, "bcrypt"), ("$2y$04$" + "a" * 53, "bcrypt"),
    # SPEC §4 (Bitrix's Password::equals): longer than 32 is salt + md5, the salt being everything
    # but the last 32 characters (any length, any characters); md5 hex is lower-case; a $6$ value
    # of 100 characters or fewer is not crypt.
    ("$2x$04$" + "a" * 53, "md5-salted"),          # not bcrypt: 28 characters of salt + 32 hex
    (sha512_crypt.using(rounds=5000, salt="s" * 16).hash("x"), "sha512-crypt"),
    ("$6$salt$hash", "unknown"), ("$5$salt$hash", "unknown"),
    ("Ab3dEf9H" + HEX32, "md5-salted"),          # 8-character salt of any kind + 32 hex
    ("zzzzzzzz" + HEX32.upper(), "unknown"),       # upper-case hex is not md5 to Bitrix
    ("Ab3dEf9H" + "z" + HEX32[1:], "unknown"),     # 40 characters, but the 9th is not hex
    ("Ab3dEf9H" + HEX32[:-1] + "g", "unknown"),
    ("Ab3dEf9H" + HEX32 + "0", "md5-salted"),      # 41 characters: a 9-character salt
    (HEX32, "md5"), (HEX32.upper(), "unknown"), (HEX32[:-1] + "g", "unknown"), (HEX32[:-1], "unknown"),
    ("plain text", "unknown"),
    # one upper-case hex character is enough to make it no md5
    ("0123456789abcdefABCDEF0123456789", "unknown"), ("Ab3dEf9H0123456789abcdefABCDEF0123456789", "unknown"),
])
def test_scheme_of(stored, scheme):
    assert pw.scheme_of(stored) == scheme
    assert pw.is_legacy(stored) is (scheme in {"sha512-crypt", "md5-salted", "md5", "bcrypt"})
    if stored is not None:
        assert pw.is_recognised(stored) is (scheme not in (None, "unknown"))


@pytest.mark.parametrize("password", ["correct horse battery staple", CYRILLIC_64, "x" * 256])
def test_bcrypt_sha256_is_passlibs_format_both_ways(password):
    ours = pw.hash_password(password, 4)
    assert ours.startswith("$bcrypt-sha256$v=2,t=2b,r=4$")
    assert bcrypt_sha256.verify(password, ours)
    assert not bcrypt_sha256.verify(password + "!", ours)
    theirs = bcrypt_sha256.using(rounds=5).hash(password)
    assert pw.verify_password(password, theirs)
    assert not pw.verify_password(password[:-1], theirs)


def test_the_cost_is_the_one_asked_for():
    assert pw.hash_password("correct horse battery staple", 5).startswith("$bcrypt-sha256$v=2,t=2b,r=5$")
    assert pw.verify_password("correct horse battery staple", pw.hash_password("correct horse battery staple", 5))


def test_a_malformed_bcrypt_sha256_hash_verifies_nothing():
    good = pw.hash_password("secret passphrase", 4)
    for broken in (good[:-1], good.replace("t=2b", "t=2a"), good.replace("v=2", "v=1"), good + "x"):
        assert pw.verify_password("secret passphrase", broken) is False


def test_imported_plain_bcrypt_is_checked_up_to_72_bytes_exactly():
    at_limit = "a" * 72
    stored = bcrypt.hashpw(at_limit.encode(), bcrypt.gensalt(4)).decode()
    assert pw.verify_password(at_limit, stored) is True
    assert pw.verify_password(at_limit + "b", stored) is False  # bcrypt itself would say yes
    assert pw.verify_password("a" * 71, stored) is False


def test_a_malformed_sha512_crypt_hash_verifies_nothing():
    stored = sha512_crypt.using(rounds=5000).hash("old password")
    assert pw.verify_password("old password", stored)
    assert pw.verify_password("old password", "$6$rounds=abc$salt$" + "x" * 86) is False


def test_md5_schemes_are_lower_case_hex_only():
    # SPEC §4: md5 hex is lower-case (as Bitrix compares it); an upper-case digest verifies nothing.
    salted = "Ab3dEf9H" + hashlib.md5(b"Ab3dEf9Hold password").hexdigest()
    assert pw.verify_password("old password", salted)
    assert not pw.verify_password("old passwore", salted)
    assert not pw.verify_password("old password", salted[:8] + salted[8:].upper())
    plain = hashlib.md5("старый".encode()).hexdigest()
    assert pw.verify_password("старый", plain)
    assert not pw.verify_password("старый!", plain)
    assert not pw.verify_password("старый", plain.upper())
    assert pw.verify_password("anything", None) is False and pw.verify_password("anything", "nonsense") is False
