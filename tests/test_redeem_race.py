"""Two processes redeem the same control string at the same moment: exactly one wins, every time.

The race is real and the test proves it: both children get their stdin written and closed
before either is waited for, both wait at a barrier after their imports, and each records the
state in which it read the control string. A round counts only if the loser read it `active`
(it really raced the winner); the test needs ROUNDS such rounds, so a test that stopped
racing would fail instead of passing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from barrier import release_together
from conftest import ROOT, add_user
from tokenhelp import link_parts

ROUNDS = 10
MAX_TRIES = 30

# Runs the CLI's own main() after recording what the redeemer read. The wrapper only observes
# (it calls the real look-up and returns its row); the barrier releases both children at once.
DRIVER = """
import json, os, sys, time
from pathlib import Path
from b24recover.__main__ import main
from b24recover.cli import app, portal  # import everything before the barrier
from b24recover.services import recovery
log, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
real_find = recovery.find
def find(ctx, conn, user, secret):
    row = real_find(ctx, conn, user, secret)
    log.write_text(json.dumps({"state": row["state"] if row else None, "at": time.time()}))
    return row
recovery.find = find
ready.touch()
while not go.exists():
    time.sleep(0.0005)
sys.exit(main(sys.argv[4:]))
"""


def race_once(db_path, config_path, work: Path, secret: str, tag: str) -> list[dict]:
    """Two redeemers of one control string released together; their outcomes and what each read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    go = work / f"go-{tag}"
    children = []
    for n in range(2):
        log, ready = work / f"read-{tag}-{n}.json", work / f"ready-{tag}-{n}"
        argv = [sys.executable, "-c", DRIVER, str(log), str(ready), str(go), "--db", str(db_path),
                "--config", str(config_path), "redeem", "anna", "--control-string-stdin", "--password-stdin",
                "--json"]
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 cwd=ROOT, env=env)
        children.append((child, log, ready))
    for n, (child, _, _) in enumerate(children):  # every stdin written and closed before any wait
        child.stdin.write(f"{secret}\nrace passphrase {tag} {n}\n".encode())
        child.stdin.close()
        child.stdin = None  # communicate() below only reads
    release_together(children, go)
    results = []
    for child, log, _ in children:
        out, err = child.communicate(timeout=120)
        read = json.loads(log.read_text()) if log.exists() else None
        results.append({"exit": child.returncode, "stdout": out.decode(), "stderr": err.decode(), "read": read})
    return results


def test_concurrent_redemptions_exactly_one_wins(proc, db_path, config_path, tmp_path):
    # bcrypt 8 (a few ms) between the read and the conditional update widens the window the
    # second redeemer must hit, so rounds that really race are the rule on a busy machine too
    config_path.write_text(config_path.read_text().replace("bcrypt_rounds = 4", "bcrypt_rounds = 8"))
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    raced, tries, won = 0, 0, 0
    while raced < ROUNDS:
        assert tries < MAX_TRIES, f"only {raced} of {tries} rounds overlapped: the test no longer races"
        tries += 1
        issued = proc("token", "issue", "anna", "--via", "none", "--force", "--json")
        assert issued.exit_code == 0, issued.stderr
        secret = link_parts(issued.json["link"])[1]
        results = race_once(db_path, config_path, tmp_path, secret, str(tries))
        codes = sorted(r["exit"] for r in results)
        assert codes == [0, 6], results  # never both, never neither
        won += 1
        loser = next(r for r in results if r["exit"] == 6)
        assert json.loads(loser["stderr"].strip().splitlines()[-1])["error"]["code"] == "control_string_used"
        assert "database is locked" not in "".join(r["stderr"] for r in results)
        if loser["read"] == {"state": "active", "at": loser["read"]["at"]}:
            raced += 1  # the loser read the control string active: the two really overlapped
    print(f"\n{raced} overlapping rounds in {tries}")
    tokens = proc("token", "list", "anna", "--json").json["control_strings"]
    assert sum(1 for t in tokens if t["state"] == "used") == won


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
