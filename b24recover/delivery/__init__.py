"""Delivery transports (SPEC §3): mail to a Maildir or SMTP, SMS to files, a program or an HTTP gateway.

Every transport answers with a short human-readable result or raises DeliveryError; the outbox
service records either one next to the message so a failure can be retried.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from pathlib import Path


# Names of environment variables this process read a secret from (--password-env VAR, ...):
# a program the tool runs never gets them (SPEC §5), whatever `[sms] command_env` says.
SECRET_ENV_NAMES: set[str] = set()


class DeliveryError(Exception):
    """str(exc) is the server's/program's answer, short, one line, no secret."""


def one_line(text: str | bytes, limit: int = 200) -> str:
    """Collapse a (possibly multi-line, possibly bytes) answer to one short line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_counter = itertools.count(1)


def unique_name() -> str:
    """A Maildir-style unique name: time, microseconds, pid, per-process counter, randomness, host.

    See https://cr.yp.to/proto/maildir.html; '/' and ':' in the host name are escaped as the
    spec asks, because ':' separates the info suffix and '/' would make a path.
    """
    now = time.time()
    seconds, usec = int(now), int((now % 1) * 1_000_000)
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"
    return f"{seconds}.M{usec}P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(8)}.{host}"


def make_private_dir(path: Path) -> None:
    """Create path (and missing parents) with mode 0700 so other local users cannot read messages."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private_file(path: Path, data: bytes) -> None:
    """Create a new 0600 file with data and flush it to disk; refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename into path durable (the directory entry itself must reach the disk)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp_path: Path, final_path: Path) -> None:
    """Atomically move a fully written file to its final name, durably."""
    os.rename(tmp_path, final_path)
    fsync_dir(final_path.parent)
