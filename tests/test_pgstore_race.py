"""Several nodes on one PostgreSQL store, as real processes released together: 8 processes redeem
one control string, 40 rounds; exactly one wins each round, and the runs really overlapped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, add_user
from tokenhelp import link_parts

# Imports first, then a barrier: say ready, wait for the go file (a fixed start time was missed
# by late processes on a loaded machine); record when main() began and ended.
DRIVER = """
import os, sys, time
from b24recover.__main__ import main
import b24recover.store.pg, b24recover.cli.app  # noqa: F401  (loaded before the start line)
go, times = sys.argv[1], sys.argv[2]
open(times + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.0005)
began = time.time()
code = main(sys.argv[3:])
with open(times, "w") as fh:
    fh.write(f"{began} {time.time()}")
sys.exit(code)
"""

PROCESSES, ROUNDS = 8, 40


def _release(go: str, times: list[str]) -> None:
    """The barrier: once every process has imported and said ready, create the go file."""
    deadline = time.monotonic() + 120
    while not all(os.path.exists(t + ".ready") for t in times):
        assert time.monotonic() < deadline, "the processes never all got ready"
        time.sleep(0.005)
    open(go, "w").close()


@pytest.fixture
def pg_only(engine):
    if engine != "postgresql":
        pytest.skip("several nodes share a PostgreSQL store")


def test_eight_nodes_redeem_one_control_string_one_winner_each_round(pg_only, proc, db_path, config_path):
    assert proc("init").exit_code == 0
    add_user(proc, "anna", "--email", "anna@example.com")
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    overlapped_all = 0
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(ROUNDS):
            issued = proc("token", "issue", "anna", "--via", "none", "--force", "--json")
            assert issued.exit_code == 0, issued.stderr
            secret = link_parts(issued.json["link"])[1]
            go = os.path.join(scratch, f"go-{round_}")
            children = []
            for n in range(PROCESSES):
                times = os.path.join(scratch, f"{round_}-{n}")
                argv = [sys.executable, "-c", DRIVER, go, times, "--db", str(db_path),
                        "--config", str(config_path), "redeem", "anna", "--control-string-stdin",
                        "--password-stdin", "--json"]
                child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=ROOT, env=env)
                # Every stdin written and closed before anyone is waited for.
                child.stdin.write(f"{secret}\nrace passphrase {round_} {n}\n".encode())
                child.stdin.close()
                children.append((child, times))
            _release(go, [times for _, times in children])
            results = []
            for child, times in children:
                child.wait(timeout=120)
                err = child.stderr.read()
                child.stdout.close()
                child.stderr.close()
                with open(times) as fh:
                    began, ended = map(float, fh.read().split())
                results.append((child.returncode, err.decode(), began, ended))
            codes = sorted(r[0] for r in results)
            assert codes == [0] + [6] * (PROCESSES - 1), results
            for code, err, _, _ in results:
                if code == 6:
                    assert json.loads(err.strip().splitlines()[-1])["error"]["code"] == "control_string_used"
            # Overlap: the winner was still running when a loser had already begun, every round.
            winner = next(r for r in results if r[0] == 0)
            assert any(r[2] < winner[3] and r[3] > winner[2] for r in results if r is not winner), results
            if max(r[2] for r in results) < min(r[3] for r in results):
                overlapped_all += 1
    assert overlapped_all > 0, "no round had all processes running at once"
    tokens = proc("token", "list", "anna", "--state", "all", "--json").json["control_strings"]
    assert sum(1 for t in tokens if t["state"] == "used") == ROUNDS
    assert proc("audit", "log", "--verify").exit_code == 0


def test_eight_nodes_requesting_for_one_account_send_one_message(pg_only, proc, db_path, config_path):
    """The throttle reads then inserts: the store-wide write lock makes that one step across nodes."""
    assert proc("init").exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(3):
            login = f"anna{round_}"
            add_user(proc, login, "--email", f"{login}@example.com")
            go = os.path.join(scratch, f"go-{round_}")
            children = []
            for n in range(PROCESSES):
                times = os.path.join(scratch, f"{round_}-{n}")
                argv = [sys.executable, "-c", DRIVER, go, times, "--db", str(db_path),
                        "--config", str(config_path), "token", "request", f"{login}@example.com", "--json"]
                children.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                  cwd=ROOT, env=env), times))
            _release(go, [times for _, times in children])
            spans = []
            for child, times in children:
                assert child.wait(timeout=120) == 0, child.stderr.read()
                child.stderr.close()
                with open(times) as fh:
                    spans.append(tuple(map(float, fh.read().split())))
            assert max(s[0] for s in spans) < min(s[1] for s in spans) or \
                sum(1 for s in spans if s[0] < spans[0][1] and s[1] > spans[0][0]) > 1, spans  # they overlapped
            messages = [m for m in proc("outbox", "list", "--json").json["messages"]
                        if m["recipient"] == f"{login}@example.com"]
            assert len(messages) == 1, messages
            tokens = proc("token", "list", login, "--state", "all", "--json").json["control_strings"]
            assert len(tokens) == 1 and tokens[0]["state"] == "active"
