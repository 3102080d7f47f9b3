"""services/secrets.py: the forms secrets take, checked against their definitions rather than
against the same functions (found by `make mutants`: a change to a digest or to the seal that is
applied both when storing and when checking passes every round trip, yet breaks every digest and
every sealed message already in a store when the tool is upgraded)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from b24recover.services import secrets as sec

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_control_string_digest_is_plain_sha256_of_the_lower_case_string():
    secret = "0123456789abcdefghijklmnopqrstuv"
    expected = hashlib.sha256(secret.encode()).hexdigest()
    assert sec.digest("link", secret, 7, KEY) == expected
    assert sec.digest("link", f"  {secret.upper()}\n", 7, KEY) == expected  # as typed or pasted
    assert sec.digest("link", secret, 8, OTHER_KEY) == expected  # neither the account nor the key


def test_code_digest_is_hmac_sha256_keyed_and_bound_to_the_account():
    expected = hmac.new(KEY, b"code:7:123456", hashlib.sha256).hexdigest()
    assert sec.digest("code", "123456", 7, KEY) == expected
    assert sec.digest("code", " 123456\n", 7, KEY) == expected
    assert sec.digest("code", "123456", 7, OTHER_KEY) != expected  # another key, another digest
    assert sec.digest("code", "123456", 8, KEY) != expected  # another account too
    assert expected != hashlib.sha256(b"123456").hexdigest()


def test_shape_of_tells_codes_links_and_neither_apart():
    assert sec.shape_of("123456") == "code"
    assert sec.shape_of(" 123456\n") == "code"
    assert sec.shape_of("0123456789abcdefghijklmnopqrstuv") == "link"
    assert sec.shape_of(" 0123456789ABCDEFGHIJKLMNOPQRSTUV\t") == "link"
    for text in ("12345", "1234567", "12345a", "0123456789abcdefghijklmnopqrstu", "0123456789abcdefghijklmnopqrstuvw",
                 "0123456789abcdefghijklmnopqrstu-", ""):
        assert sec.shape_of(text) is None, text


def test_new_secrets_have_their_shape_and_spread_over_the_whole_range():
    codes = [sec.new_code() for _ in range(400)]
    assert all(re.fullmatch(r"[0-9]{6}", c) for c in codes)
    assert len(set(codes)) > 390  # a million possible codes, not a few dozen
    assert max(int(c) for c in codes) > 500_000 and min(int(c) for c in codes) < 500_000
    strings = [sec.new_control_string() for _ in range(50)]
    assert all(re.fullmatch(r"[0-9a-z]{32}", s) for s in strings) and len(set(strings)) == 50
    assert set("".join(strings)) == set(sec.ALPHABET)  # 1,600 characters use all 36


def _seal_by_definition(secret: str, key: bytes, nonce: bytes) -> str:
    """base64(nonce + secret XOR keystream); block i of the keystream is
    HMAC-SHA256(key, "seal:" + nonce + i as 4 bytes big-endian)."""
    raw = secret.encode("ascii")
    stream = b"".join(hmac.new(key, b"seal:" + nonce + i.to_bytes(4, "big"), hashlib.sha256).digest()
                      for i in range(len(raw) // 32 + 1))
    return base64.b64encode(nonce + bytes(a ^ b for a, b in zip(raw, stream))).decode("ascii")


@pytest.mark.parametrize("secret", ["123456", "0123456789abcdefghijklmnopqrstuv", "x" * 100])
def test_seal_is_the_documented_keystream_and_unseals_sealed_values_of_any_length(secret, monkeypatch):
    nonce = bytes(range(100, 116))
    monkeypatch.setattr(sec.secrets, "token_bytes", lambda n: nonce[:n])
    sealed = sec.seal(secret, KEY)
    assert sealed == _seal_by_definition(secret, KEY, nonce)
    assert sec.unseal(_seal_by_definition(secret, KEY, nonce), KEY) == secret


def test_each_seal_has_a_fresh_nonce():
    first, second = sec.seal("123456", KEY), sec.seal("123456", KEY)
    assert first != second
    assert sec.unseal(first, KEY) == sec.unseal(second, KEY) == "123456"
    assert len(base64.b64decode(first)) == 16 + 6
