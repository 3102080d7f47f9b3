"""The secret key kept outside the database (SPEC §5): a 0600 file beside the store."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import B24Error
from ..private_files import check as check_private

WHAT = "the key file"


def ensure_key(path: Path) -> bool:
    """Create the key file if missing (an existing one is checked, its mode tightened).
    Returns True when a new key was written."""
    if os.environ.get("B24RECOVER_SECRET"):
        return False
    if os.path.lexists(path):
        check_private(path, WHAT, "unsafe_file", tighten=True)
        return False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        check_private(path, WHAT, "unsafe_file", tighten=True)
        return False
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


def load_key(path: Path) -> bytes:
    env = os.environ.get("B24RECOVER_SECRET")
    if env:
        return env.encode("utf-8")
    if not os.path.lexists(path):
        raise B24Error("key_missing", f"the key file {path} is missing")
    check_private(path, WHAT, "unsafe_file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            text = fh.read(4096).decode("ascii").strip()
    except FileNotFoundError:
        raise B24Error("key_missing", f"the key file {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise B24Error("key_missing", f"cannot read the key file {path}: {exc}") from None
    if len(text) < 32:
        raise B24Error("key_missing", f"the key file {path} is too short to be a key")
    return text.encode("ascii")
