"""The secret key kept outside the database (SPEC §5): a 0600 file beside the store."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import B24Error


def ensure_key(path: Path) -> bool:
    """Create the key file if missing. Returns True when a new key was written."""
    if os.environ.get("B24RECOVER_SECRET") or path.exists():
        return False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


def load_key(path: Path) -> bytes:
    env = os.environ.get("B24RECOVER_SECRET")
    if env:
        return env.encode("utf-8")
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise B24Error("key_missing", f"the key file {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise B24Error("key_missing", f"cannot read the key file {path}: {exc}") from None
    if len(text) < 32:
        raise B24Error("key_missing", f"the key file {path} is too short to be a key")
    return text.encode("ascii")
