"""Control strings and SMS codes: generation, the hashes kept in the store, and sealing.

Only hashes are stored: SHA-256 for 32-character control strings (they carry 165 bits, nothing
to brute-force), HMAC-SHA256 with the key file for 6-digit codes (a bare hash of a million
possible codes would be reversed at once). A message waiting in the outbox needs its secret,
so the secret is *sealed* there with a keystream from the key file (HMAC-SHA256 as a PRF with
a random nonce) and the seal is erased once the message is sent or cancelled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string

ALPHABET = string.digits + string.ascii_lowercase  # Bitrix USER_CHECKWORD: [0-9a-z]
CONTROL_STRING_LENGTH = 32
CODE_LENGTH = 6
_CONTROL_STRING = re.compile(r"^[0-9a-z]{32}$")
_CODE = re.compile(r"^[0-9]{6}$")


def new_control_string() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CONTROL_STRING_LENGTH))


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_LENGTH):0{CODE_LENGTH}d}"


def shape_of(text: str) -> str | None:
    """'link' for a control string, 'code' for an SMS code, None for neither."""
    text = text.strip()
    if _CODE.match(text):
        return "code"
    if _CONTROL_STRING.match(text.lower()):
        return "link"
    return None


def digest(kind: str, secret: str, user_id: int, key: bytes) -> str:
    if kind == "link":
        return hashlib.sha256(secret.strip().lower().encode("ascii")).hexdigest()
    return hmac.new(key, f"code:{user_id}:{secret.strip()}".encode("ascii"), hashlib.sha256).hexdigest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    stream, counter = b"", 0
    while len(stream) < length:
        stream += hmac.new(key, b"seal:" + nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return stream[:length]


def seal(secret: str, key: bytes) -> str:
    nonce = secrets.token_bytes(16)
    raw = secret.encode("ascii")
    sealed = bytes(a ^ b for a, b in zip(raw, _keystream(key, nonce, len(raw))))
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(sealed: str, key: bytes) -> str:
    blob = base64.b64decode(sealed)
    nonce, body = blob[:16], blob[16:]
    return bytes(a ^ b for a, b in zip(body, _keystream(key, nonce, len(body)))).decode("ascii")
