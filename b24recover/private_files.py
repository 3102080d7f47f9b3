"""Files the tool trusts with secrets (SPEC §5): the store and its -wal/-shm, the key file, the
outbox folders. New ones are created private; existing ones are checked, not trusted: a
symbolic link, another owner, or access for group or others is refused (`init` tightens the
mode of what the caller owns). One rule, used by the store, the key file and the delivery code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import B24Error

OPEN_TO_OTHERS = 0o077  # any permission bit for group or others


def problem(st: os.stat_result, *, directory: bool = False) -> str | None:
    """Why an existing file (from lstat) is not private to the caller, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if directory and not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if not directory and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if stat.S_IMODE(st.st_mode) & OPEN_TO_OTHERS:
        return f"is open to group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _tighten(path: Path, directory: bool) -> None:
    """chmod to 0600/0700 without following a symbolic link put there meanwhile."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fchmod(fd, 0o700 if directory else 0o600)
    finally:
        os.close(fd)


def check(path: Path, what: str, code: str, *, directory: bool = False, tighten: bool = False) -> None:
    """Refuse an existing `path` that is not private to the caller (B24Error `code`); a missing
    one passes. With `tighten`, a mode open to others is narrowed instead, when we own it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise B24Error(code, f"cannot inspect {what} {path}: {exc.strerror}") from None
    reason = problem(st, directory=directory)
    if reason is not None and tighten and reason.startswith("is open"):
        try:
            _tighten(path, directory)
            return
        except OSError as exc:
            reason += f", and it could not be tightened: {exc.strerror}"
    if reason is not None:
        mode = "chmod 700" if directory else "chmod 600"
        raise B24Error(code, f"{what} {path} {reason}; refusing to use it",
                       hint=f"It must be a real {'folder' if directory else 'file'} of yours that only you can "
                            f"read ({mode} {path}, or run 'b24recover init', which tightens modes it can).")


def make_dirs(root: Path, sub: str = "", code: str = "unsafe_file") -> Path:
    """root/sub with every folder from root down created 0700 (whatever the umask: mkdir's
    parents would get 0755) and every existing one checked."""
    path = Path(root)
    if not path.parent.exists():
        os.makedirs(path.parent, exist_ok=True)  # folders above the outbox: not ours to judge
    parts = [path, *[path := path / p for p in Path(sub).parts]] if sub else [path]
    for folder in parts:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            check(folder, "the outbox folder", code, directory=True)
            continue
        _tighten(folder, directory=True)  # exactly 0700, whatever the umask took away
    return parts[-1]


def check_outbox(root: Path) -> None:
    """The outbox root and its mail/ and sms/ folders, when they exist (every command that may
    deliver checks them before it starts, so a bad outbox is refused, not written into)."""
    root = Path(root)
    for folder in (root, root / "mail", root / "sms"):
        check(folder, "the outbox folder", "unsafe_file", directory=True)
