"""Password hashes: bcrypt-sha256 for new passwords; imported Bitrix hashes are recognised and
verified by `bitrix_hash` (Bitrix's own Password::equals rule), the one place of that rule.

New hashes use passlib's documented bcrypt-sha256 v2 format (written here with pyca/bcrypt): the password is pre-hashed with
HMAC-SHA256 keyed by the bcrypt salt and base64-encoded before bcrypt, so a password of any
length is used whole (bcrypt alone would cut it at 72 bytes) and no raw binary reaches bcrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

BCRYPT_SHA256 = "bcrypt-sha256"
LEGACY_SCHEMES = {"sha512-crypt", "md5-salted", "md5", "bcrypt"}


def scheme_of(stored: str | None) -> str | None:
    if not stored:
        return None
    if stored.startswith("$bcrypt-sha256$"):
        return BCRYPT_SHA256
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return "bcrypt"
    from . import bitrix_hash

    return bitrix_hash.recognise(stored) or "unknown"


def is_legacy(stored: str | None) -> bool:
    return scheme_of(stored) in LEGACY_SCHEMES


def is_recognised(stored: str) -> bool:
    return scheme_of(stored) not in (None, "unknown")


_BCRYPT_SHA256 = re.compile(r"^\$bcrypt-sha256\$v=2,t=2b,r=(\d{1,2})\$([./A-Za-z0-9]{22})\$([./A-Za-z0-9]{31})$")


def _prehash(password: str, salt: str) -> bytes:
    """bcrypt-sha256 v2: HMAC-SHA256 keyed by the 22-character bcrypt salt, base64-encoded."""
    return base64.b64encode(hmac.new(salt.encode("ascii"), password.encode("utf-8"), hashlib.sha256).digest())


def hash_password(password: str, rounds: int) -> str:
    """passlib's `$bcrypt-sha256$v=2,t=2b,r=N$salt$digest`, written with pyca/bcrypt directly
    (importing passlib cost ~160 ms a run; the format and result are the same)."""
    import bcrypt

    config = bcrypt.gensalt(rounds, prefix=b"2b").decode("ascii")  # "$2b$NN$" + 22-char salt
    salt = config[-22:]
    digest = bcrypt.hashpw(_prehash(password, salt), config.encode("ascii")).decode("ascii")[-31:]
    return f"$bcrypt-sha256$v=2,t=2b,r={rounds}${salt}${digest}"


def verify_password(password: str, stored: str | None, charset: str = "utf-8") -> bool:
    """`charset` is the portal's ([portal] charset): Bitrix hashes are over those bytes."""
    scheme = scheme_of(stored)
    if scheme is None or scheme == "unknown":
        return False
    raw = password.encode("utf-8")
    if scheme == BCRYPT_SHA256:
        import bcrypt

        match = _BCRYPT_SHA256.match(stored)
        if match is None:
            return False
        rounds, salt, digest = int(match[1]), match[2], match[3]
        computed = bcrypt.hashpw(_prehash(password, salt), f"$2b${rounds:02d}${salt}".encode("ascii"))
        return hmac.compare_digest(computed[-31:], digest.encode("ascii"))
    if scheme == "bcrypt":
        import bcrypt

        # Plain bcrypt only sees 72 bytes; a longer candidate cannot be the imported password.
        return len(raw) <= 72 and bcrypt.checkpw(raw, stored.encode("ascii"))
    from . import bitrix_hash

    return bitrix_hash.verify(password, stored, charset)
