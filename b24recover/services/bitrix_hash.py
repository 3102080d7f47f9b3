"""Bitrix password hashes, exactly as the main module's `Password::equals` and `Password::hash`.

`Password::equals($hash, $password)` decides by length alone (SPEC §4):

- longer than 100 characters: crypt(3), i.e. `crypt($password, $hash) === $hash` (Bitrix only
  ever writes `$6$` SHA-512-crypt);
- longer than 32: salted md5, the salt being everything but the last 32 characters (any length,
  any characters): `md5($salt . $password) === substr($hash, -32)`;
- otherwise: `md5($password) === $hash`.

PHP's md5() answers lower-case hex and the comparison is exact, so an upper-case digest never
matches, and a `$6$` value of 100 characters or fewer is a salted md5 to Bitrix that can never
match either. PHP hashes the bytes it is given: the portal's charset (`[portal] charset`), so a
Cyrillic password of a windows-1251 portal is hashed over its cp1251 bytes.

`recognise` is what import uses: the scheme of a value Bitrix could verify, or None. Values with
`$6$rounds=` are refused (Bitrix never writes them, and one row could cost unbounded CPU).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading

CHARSETS = {"utf-8": "utf-8", "windows-1251": "cp1251"}
CRYPT_OVER = 100      # longer: crypt(3)
MD5_LEN = 32
SALT_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SALT_LEN = 16         # Password::hash: "$6$" + 16 random [0-9A-Za-z] + "$"

SHA512_CRYPT = "sha512-crypt"
MD5_SALTED = "md5-salted"
MD5 = "md5"

_LOWER_HEX = re.compile(r"[0-9a-f]{32}")
# glibc/passlib SHA-512-crypt with the implicit 5000 rounds: salt up to 16 of [./0-9A-Za-z].
_SHA512 = re.compile(r"\$6\$[./0-9A-Za-z]{0,16}\$[./0-9A-Za-z]{86}")


def scheme(stored: str) -> str:
    """The branch of Password::equals a stored value takes (decided by length only)."""
    if len(stored) > CRYPT_OVER:
        return SHA512_CRYPT
    if len(stored) > MD5_LEN:
        return MD5_SALTED
    return MD5


def recognise(stored: str) -> str | None:
    """The scheme of a value Bitrix can verify a password against, else None."""
    kind = scheme(stored)
    if kind == SHA512_CRYPT:
        return kind if _SHA512.fullmatch(stored) else None
    return kind if _LOWER_HEX.fullmatch(stored[-MD5_LEN:]) and len(stored) >= MD5_LEN else None


def refusal(stored: str) -> str | None:
    """Why import refuses a value as a Bitrix hash, or None when it is usable."""
    if stored.startswith("$6$rounds="):
        return "a $6$rounds= hash is refused: Bitrix never writes one, and its cost has no bound"
    if recognise(stored) is not None:
        return None
    if stored.startswith("$6$") and len(stored) <= CRYPT_OVER:
        return (f"a $6$ value of {len(stored)} characters is not SHA-512-crypt to Bitrix (only values longer "
                f"than {CRYPT_OVER} are), and as salt + md5 it can never match")
    if len(stored) > CRYPT_OVER:
        return "a value longer than 100 characters must be a $6$ SHA-512-crypt hash"
    return "the last 32 characters must be a lower-case hex md5 digest (Bitrix: salt + md5, or md5)"


def _encoding(charset: str) -> str:
    try:
        return CHARSETS[charset]
    except KeyError:
        raise ValueError(f"unknown portal charset {charset!r}") from None


def _bytes(text: str, charset: str) -> bytes | None:
    """The bytes PHP would hash; None when the text cannot be written in the portal's charset
    (such a password cannot be the portal's)."""
    try:
        return text.encode(_encoding(charset))
    except UnicodeEncodeError:
        return None


def verify(password: str, stored: str, charset: str = "utf-8") -> bool:
    """Password::equals over the bytes of `charset`."""
    if not stored or stored.startswith("$6$rounds="):
        return False
    raw = _bytes(password, charset)
    if raw is None:
        return False
    kind = scheme(stored)
    if kind == SHA512_CRYPT:
        if not _SHA512.fullmatch(stored):
            return False
        try:
            return _sha512_crypt().verify(raw, stored)
        except ValueError:
            return False
    if kind == MD5_SALTED:
        salt = _bytes(stored[:-MD5_LEN], charset)
        if salt is None:
            return False
        return hmac.compare_digest(hashlib.md5(salt + raw).hexdigest(), stored[-MD5_LEN:])
    return hmac.compare_digest(hashlib.md5(raw).hexdigest(), stored)


_IMPORT = threading.Lock()


def _sha512_crypt():
    """passlib's handler; its lazy module is not safe to import from several threads at once
    (bulk reset hashes in a pool), so the first import is serialised."""
    with _IMPORT:
        from passlib.hash import sha512_crypt

    return sha512_crypt


def new_salt() -> str:
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(SALT_LEN))


def bitrix_hash(password: str, charset: str = "utf-8", salt: str | None = None) -> str:
    """Password::hash: `$6$` + 16 random [0-9A-Za-z] + `$` + SHA-512-crypt (5000 rounds, implicit)
    over the password's bytes in the portal's charset. Raises ValueError when the password cannot
    be written in that charset (the portal could not store it)."""
    raw = _bytes(password, charset)
    if raw is None:
        raise ValueError(f"the password has characters that {charset} cannot hold")
    return _sha512_crypt().using(salt=salt or new_salt(), rounds=5000).hash(raw)
