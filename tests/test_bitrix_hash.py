"""Bitrix hash recognition and verification (SPEC §4, Password::equals), against vectors made
here by independent implementations: libpass `sha512_crypt` with an explicit salt, `hashlib.md5`,
`openssl passwd -6` and PHP's crypt() when those programs exist. Never against the code under test."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from passlib.hash import sha512_crypt

from b24recover.services import bitrix_hash as bh
from b24recover.services.importer import check_hash
from b24recover.errors import B24Error
from b24recover.services.passwords import scheme_of, verify_password

PASSWORDS = {
    "ascii": "Kremlin-Admin-1147",
    "cyrillic": "Белые ночи 1703",
    "long": ("Пароль-" * 43)[:300],
    "special": "p@ss;w,o\\rd\"'$`\t%{}<>|\u00e9\u00df",
}
SALTS = {3: "a;b", 8: "q1,W2\\e3", 12: "k;,\\Zq9*0!xy", 40: ("s;a,l\\t" * 6)[:40]}
CHARSETS = {"utf-8": "utf-8", "windows-1251": "cp1251"}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def crypt6(raw: bytes, salt: str) -> str:
    return sha512_crypt.using(salt=salt, rounds=5000).hash(raw)


def encodable(password: str, encoding: str) -> bool:
    try:
        password.encode(encoding)
        return True
    except UnicodeEncodeError:
        return False


CASES = []
for pname, password in PASSWORDS.items():
    for charset, encoding in CHARSETS.items():
        if not encodable(password, encoding):
            continue
        raw = password.encode(encoding)
        CASES.append((f"{pname}-{charset}-md5", charset, password, md5(raw)))
        for n, salt in SALTS.items():
            CASES.append((f"{pname}-{charset}-salt{n}", charset, password, salt + md5(salt.encode(encoding) + raw)))
        CASES.append((f"{pname}-{charset}-crypt16", charset, password, crypt6(raw, "Ab3dE5fG7hJ9kL1m")))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_independent_vectors_verify_and_near_misses_do_not(case):
    _, charset, password, stored = case
    assert verify_password(password, stored, charset)
    assert bh.verify(password, stored, charset)
    assert not bh.verify(password + "x", stored, charset)
    assert not bh.verify(password[:-1], stored, charset)
    other = "windows-1251" if charset == "utf-8" else "utf-8"
    if not password.isascii():  # the same password over the other charset's bytes is another one
        assert not bh.verify(password, stored, other)


def test_schemes_follow_the_length_rule():
    raw = b"secret"
    assert bh.scheme(md5(raw)) == "md5"
    assert bh.scheme("x" * 33) == "md5-salted"
    assert bh.scheme("x" * 100) == "md5-salted"
    assert bh.scheme("x" * 101) == "sha512-crypt"
    assert scheme_of(crypt6(raw, "Ab3dE5fG7hJ9kL1m")) == "sha512-crypt"
    assert scheme_of("abc" + md5(raw)) == "md5-salted"


def test_a_short_6_value_is_salted_md5_to_bitrix_and_never_verifies():
    stored = crypt6(b"Kremlin-Admin-1147", "aB3dE5fG")  # 8-character salt: 98 characters
    assert len(stored) <= 100
    assert not bh.verify("Kremlin-Admin-1147", stored)
    assert bh.recognise(stored) is None
    assert "not SHA-512-crypt to Bitrix" in bh.refusal(stored)
    # ... but a ≤100-character value ending in an md5 of its own prefix is a Bitrix salted md5
    salt = "$6$aB3dE5fG$" + "x" * 50
    stored = salt + md5(salt.encode() + b"pw")
    assert len(stored) <= 100 and bh.verify("pw", stored)


def test_upper_case_md5_is_never_equal_in_php():
    stored = md5(b"password1").upper()
    assert not bh.verify("password1", stored)
    assert bh.refusal(stored) is not None


def test_rounds_are_refused_at_import_and_never_computed():
    stored = sha512_crypt.using(rounds=1000, salt="Ab3dE5fG7hJ9kL1m").hash("pw")
    assert stored.startswith("$6$rounds=1000$")
    with pytest.raises(B24Error) as err:
        check_hash(stored, "PASSWORD")
    assert "rounds" in err.value.message
    assert not bh.verify("pw", "$6$rounds=999999999$Ab3dE5fG7hJ9kL1m$" + "a" * 86)


def test_bitrix_hash_writes_the_current_format_and_independent_code_verifies_it():
    for charset, encoding in CHARSETS.items():
        password = "Белые ночи 1703"
        stored = bh.bitrix_hash(password, charset)
        assert stored.startswith("$6$") and len(stored) == 106
        salt = stored.split("$")[2]
        assert len(salt) == 16 and all(c in bh.SALT_ALPHABET for c in salt)
        assert crypt6(password.encode(encoding), salt) == stored
    salts = {bh.bitrix_hash("x").split("$")[2] for _ in range(20)}
    assert len(salts) == 20
    with pytest.raises(ValueError):
        bh.bitrix_hash("emoji 🙂", "windows-1251")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_crypt_agrees():
    salt = "Zx9Yw8Vu7Ts6Rq5P"
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="Rain-over-Kazan-2019\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    assert bh.verify("Rain-over-Kazan-2019", out)
    assert bh.bitrix_hash("Rain-over-Kazan-2019", salt=salt) == out


@pytest.mark.skipif(shutil.which("php") is None, reason="php is not installed")
def test_php_crypt_agrees():
    code = "echo crypt('Rain-over-Kazan-2019', '$6$Zx9Yw8Vu7Ts6Rq5P$');"
    out = subprocess.run(["php", "-r", code], capture_output=True, text=True, check=True).stdout.strip()
    assert bh.verify("Rain-over-Kazan-2019", out)
