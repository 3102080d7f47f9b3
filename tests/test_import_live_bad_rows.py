"""On a terminal, `user import` shows each bad row as it finds it, above the progress line."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys

from conftest import ROOT


def _run_on_terminal(argv: list[str], timeout: float = 60) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "b24recover", *argv])
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_bad_rows_are_shown_as_they_are_found(tmp_path, db_path, config_path, proc):
    assert proc("init").exit_code == 0
    rows = ["login,email,phone,name"] + [f"user{n:03},user{n:03}@example.com,,User" for n in range(20)]
    rows[6] = "bad one,not-an-email,,Broken"
    source = tmp_path / "users.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out = _run_on_terminal(["--db", str(db_path), "--config", str(config_path), "user", "import", str(source)])
    text = out.decode("utf-8", "replace")
    assert code == 5, text  # a bad row: exit 5, good rows kept
    assert "bad row: line 7 (bad one):" in text
    # shown live, then repeated in the summary after the progress line is gone
    assert text.index("bad row: line 7") < text.index("added 19")


def test_piped_import_prints_bad_rows_only_in_the_summary(tmp_path, store, proc):
    source = tmp_path / "users.csv"
    source.write_text("login,email\nok1,ok1@example.com\nbad one,nope\n", encoding="utf-8")
    r = proc("user", "import", str(source))
    assert r.exit_code == 5
    assert "bad row:" not in r.stderr and "line 3 (bad one)" in r.stderr
