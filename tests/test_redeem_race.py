"""Two processes redeem the same control string at the same moment: exactly one wins, every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import ROOT, add_user
from tokenhelp import link_parts

DRIVER = """
import sys, time
from b24recover.__main__ import main
from b24recover.cli import app  # import everything before the start line
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.0005)
sys.exit(main(sys.argv[2:]))
"""


def test_concurrent_redemptions_exactly_one_wins(proc, db_path, config_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    for round_ in range(12):
        issued = proc("token", "issue", "anna", "--via", "none", "--force", "--json")
        assert issued.exit_code == 0, issued.stderr
        secret = link_parts(issued.json["link"])[1]
        start = time.time() + 1.0
        children = []
        for n in range(2):
            argv = [sys.executable, "-c", DRIVER, str(start), "--db", str(db_path), "--config", str(config_path),
                    "redeem", "anna", "--control-string-stdin", "--password-stdin", "--json"]
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=env)
            children.append((child, f"{secret}\nrace passphrase {round_} {n}\n".encode()))
        results = []
        for child, data in children:
            out, err = child.communicate(data, timeout=60)
            results.append((child.returncode, out.decode(), err.decode()))
        codes = sorted(r[0] for r in results)
        assert codes == [0, 6], results
        loser = next(r for r in results if r[0] == 6)
        assert json.loads(loser[2].strip().splitlines()[-1])["error"]["code"] == "control_string_used"
        assert "database is locked" not in "".join(r[2] for r in results)
    tokens = proc("token", "list", "anna", "--json").json["control_strings"]
    assert sum(1 for t in tokens if t["state"] == "used") == 12


def test_ctrl_c_is_exit_130(db_path, config_path, proc):
    """SIGINT while the tool waits at a prompt (a real terminal) ends with 130, no traceback."""
    import pty
    import signal

    assert proc("init").exit_code == 0
    pid, fd = pty.fork()
    if pid == 0:  # the child runs the CLI on the terminal
        # A shell's background job inherits SIGINT ignored; a terminal user's process does not.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config",
                                  str(config_path), "user", "add", "anna"])
    out = b""
    deadline = time.time() + 30
    while b"password" not in out.lower() and time.time() < deadline:
        out += os.read(fd, 1024)
    os.kill(pid, signal.SIGINT)
    rest = b""
    try:
        while True:
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130
    assert b"Traceback" not in rest
