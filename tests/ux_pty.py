"""Run the CLI on a pseudo-terminal of a given size, answering prompts as they appear."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


def pty_run(argv: list[str], answers=(), *, cwd, env: dict | None = None, cols: int = 120, rows: int = 40,
            timeout: float = 60) -> tuple[int, str]:
    """(exit code, everything the terminal showed). answers: (prompt bytes, reply bytes) in order;
    a reply is written once its prompt has appeared (after the previous one)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("B24RECOVER_", "NO_COLOR", "COLUMNS", "LINES"))}
    full_env.update({"TERM": "xterm", "PAGER": ""}, **(env or {}))
    child = subprocess.Popen([sys.executable, "-m", "b24recover", *argv], stdin=slave, stdout=slave, stderr=slave,
                             cwd=cwd, env=full_env, start_new_session=True, close_fds=True)
    os.close(slave)
    output, seen, pending = b"", 0, list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                child.kill()
                raise AssertionError(f"no answer from the CLI; output so far: {output!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and pending[0][0] in output[seen:]:
                seen = output.index(pending[0][0], seen) + len(pending[0][0])
                time.sleep(0.05)  # getpass turns echo off right after printing the prompt
                os.write(master, pending.pop(0)[1])
    finally:
        os.close(master)
    return child.wait(timeout=timeout), output.decode("utf-8", "replace")
