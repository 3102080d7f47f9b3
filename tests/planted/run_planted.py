"""Plant realistic bugs one at a time and check that the tests catch each (docs/testing.md).

For every bug: copy the project (package and tests) to a temporary folder, apply one text
replacement to the copy, run the tests that guard that rule against the copy, and report
"caught" (the tests failed) or "NOT CAUGHT". The same tests are first run on the unchanged
copy, which must pass, so a failure means the bug and nothing else. The working tree is never
touched.

    .venv/bin/python tests/planted/run_planted.py                  # every bug
    .venv/bin/python tests/planted/run_planted.py --only consume   # by name (several allowed)
    .venv/bin/python tests/planted/run_planted.py --list
    .venv/bin/python tests/planted/run_planted.py --repeat 10      # race bugs: 10 runs each
    .venv/bin/python tests/planted/run_planted.py --slow           # also the two slow ones

Exit 0 when every bug was caught (in every run, for the race bugs), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Bug:
    name: str
    file: str          # relative to b24recover/
    old: str           # must occur exactly once
    new: str
    tests: list[str]   # pytest arguments, relative to the project root
    what: str
    race: bool = False  # caught only under concurrency: run --repeat times
    slow: bool = False  # waits out a 60 s gateway timeout: only with --slow


BUGS = [
    Bug("consume", "store/tokens.py",
        """" WHERE id = ? AND state = 'active' AND expires_at >= ?",""",
        """" WHERE id = ? AND expires_at >= ?",""",
        ["tests/test_redeem_race.py::test_concurrent_redemptions_exactly_one_wins"],
        "the consume UPDATE without AND state = 'active' (two redeemers both win)", race=True),
    Bug("one-active-index", "store/schema.py",
        "CREATE UNIQUE INDEX control_strings_one_active ON control_strings(user_id) WHERE state = 'active';",
        "",
        ["tests/test_races.py"],
        "the partial unique index control_strings_one_active dropped"),
    Bug("request-throttle", "services/tokens.py",
        'issued = create(ctx, conn, user, via=channel, ttl=None, action="token.request")',
        'issued = create(ctx, conn, user, via=channel, ttl=None, action="token.request", throttle=False)',
        ["tests/test_enumeration.py"],
        "token request skips the throttle"),
    Bug("refuse-unknown-at-once", "services/guessing.py",
        '    longer works is told apart) with its audit event; return the error to raise."""\n',
        '    longer works is told apart) with its audit event; return the error to raise."""\n'
        "    if user is None:\n        return incorrect()\n",
        ["tests/test_enumeration.py"],
        "refusing an unknown login at once (no work, no count, no audit)"),
    Bug("code-unkeyed-sha256", "services/secrets.py",
        'return hmac.new(key, f"code:{user_id}:{secret.strip()}".encode("ascii"), hashlib.sha256).hexdigest()',
        'return hashlib.sha256(secret.strip().encode("ascii")).hexdigest()',
        ["tests/test_guessing.py"],
        "the SMS code stored as a plain unkeyed SHA-256"),
    Bug("no-supersede", "services/tokens.py",
        'superseded = token_store.supersede_active(conn, user["id"], now)',
        "superseded = 0",
        ["tests/test_races.py::test_a_new_control_string_supersedes_the_old_one"],
        "supersede never runs (caught by the behaviour test, not only as an IntegrityError)"),
    Bug("daily-limit", "services/tokens.py",
        "if count >= t.daily_limit:",
        "if count > t.daily_limit:",
        ["tests/test_enumeration.py::test_token_request_daily_limit"],
        "daily limit >= becomes >"),
    # the rules of issue 13 items 4, 5 and 8
    Bug("check-uses-no-try", "services/tokens.py",
        'raise guessing.refuse(ctx, user, login, None, secret, "token.check.failed")',
        "raise guessing.incorrect()",
        ["tests/test_guessing.py", "tests/test_enumeration.py"],
        "token check of a wrong code does not count a try (nor audit)"),
    Bug("no-budget", "services/guessing.py",
        "    if count < budget:\n",
        "    if True:\n",
        ["tests/test_guessing.py"],
        "the failure budget never pauses recovery"),
    Bug("budget-off-by-one", "services/guessing.py",
        "    if count < budget:\n",
        "    if count <= budget:\n",
        ["tests/test_guessing.py"],
        "the pause starts one wrong try late"),
    Bug("pause-not-checked-on-issue", "services/tokens.py",
        "    guessing.check_may_issue(ctx, conn, user)\n",
        "",
        ["tests/test_guessing.py"],
        "a paused account still gets new control strings"),
    Bug("revoke-keeps-count", "services/tokens.py",
        "failures = guessing.reset(ctx, conn, user)",
        "failures = 0",
        ["tests/test_guessing.py"],
        "token revoke does not reset the failure count"),
    Bug("code-count-never-restarts", "services/guessing.py",
        "code_id = failure_store.newest_code_id(conn, user_id)",
        "code_id = 0",
        ["tests/test_guessing.py"],
        "a new code does not start its own three tries"),
    Bug("unknown-login-in-clear", "services/guessing.py",
        'return "k:" + digest.hexdigest()',
        'return "k:" + name',
        ["tests/test_enumeration.py"],
        "the typed unknown login kept in clear in the failure table"),
    Bug("pending-survives-revoke", "store/tokens.py",
        '        conn.execute("DELETE FROM pending_addresses WHERE user_id = ? AND address = ?", (user_id, ending["address"]))\n',
        "        pass\n",
        ["tests/test_diagnose_agrees.py"],
        "a pending address outlives the control string sent to it (diagnose dead end)"),
    Bug("diagnose-resend-via-email", "services/diagnose.py",
        "f\"Send a control string to set the first password: {_resend(user)}\"",
        "f\"Send a control string to set the first password: b24recover token issue {name} --via email\"",
        ["tests/test_diagnose_agrees.py"],
        "diagnose advises --via email for an account without email"),
    Bug("request-delivers-inline", "cli/portal.py",
        "        if sctx.detach:\n            outbox.deliver_detached(sctx, messages)\n",
        "        if sctx.detach:\n            [outbox.deliver(sctx, m) for m in messages]\n",
        ["tests/test_enumeration.py::test_token_request_answers_before_delivery_and_delivery_follows"],
        "token request delivers before it answers", slow=True),
    Bug("request-sends-before-portal-checkword", "services/tokens.py",
        "    writeback.flush()  # the portal's CHECKWORD first, so the link works when the message arrives\n"
        "    messages = [one.message_id",
        "    messages = [one.message_id",
        ["tests/test_writeback_portal.py::test_token_request_in_a_process_writes_the_checkword_before_the_message_goes"],
        "token request (detached with write-back) sends the link before the portal holds its CHECKWORD"),
    Bug("fork-with-open-connection", "services/outbox.py",
        "    ctx.store.close()  # the caller needs the store no more; see above\n",
        "",
        ["tests/test_enumeration.py::test_token_request_answers_before_delivery_and_delivery_follows"],
        "the detached deliverer inherits the caller's open SQLite connection", slow=True),
]


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "out", "*.db", "*.db-*", "*.key", "*.outbox",
                                    ".hypothesis", "*.egg-info", "build", "demo-run", "mutants")
    for part in ("b24recover", "tests", "pyproject.toml", "examples", "docs"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / part)


def plant(copy: Path, bug: Bug) -> None:
    path = copy / "b24recover" / bug.file
    text = path.read_text(encoding="utf-8")
    found = text.count(bug.old)
    if found != 1:
        raise SystemExit(f"{bug.name}: the text to replace occurs {found} times in {bug.file} (expected once)")
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")


def env_for(copy: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env["PYTHONPATH"] = str(copy)  # the copy before the installed (editable) project
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_copy(copy: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import b24recover; print(b24recover.__file__)"], cwd=copy,
                          env=env_for(copy), capture_output=True, text=True)
    if not done.stdout.strip().startswith(str(copy)):
        raise SystemExit(f"the copy is not what gets imported: {done.stdout.strip()} {done.stderr.strip()}")


def run_tests(copy: Path, tests: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=env_for(copy), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return done.returncode, (failed[0] if failed else (lines[-1] if lines else done.stderr.strip()[-200:]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=[], help="bug names to plant (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="runs for bugs only a race can reveal (default 3)")
    p.add_argument("--list", action="store_true", help="list the bugs and exit")
    p.add_argument("--slow", action="store_true", help="also the bugs that take a minute each to show")
    args = p.parse_args()
    bugs = [b for b in BUGS if (b.name in args.only if args.only else args.slow or not b.slow)]
    if args.list or not bugs:
        for b in BUGS:
            print(f"{b.name:28} {b.file:22} {b.what}")
        return 0 if args.list else 2
    missed = 0
    with tempfile.TemporaryDirectory(prefix="b24planted-") as tmp:
        base = Path(tmp) / "clean"
        copy_project(base)
        check_imports_copy(base)
        tests = sorted({t for b in bugs for t in b.tests})
        code, last = run_tests(base, tests)
        if code != 0:
            print(f"the unchanged copy fails its tests ({last}); nothing can be concluded")
            return 1
        print(f"unchanged copy: {' '.join(tests)} pass\n")
        for bug in bugs:
            copy = Path(tmp) / bug.name
            shutil.copytree(base, copy)
            plant(copy, bug)
            runs = args.repeat if bug.race else 1
            caught, detail, t0 = 0, "", time.monotonic()
            for _ in range(runs):
                code, last = run_tests(copy, bug.tests)
                if code == 1:  # 1: tests failed; anything else (errors, no tests) proves nothing
                    caught += 1
                    detail = last
                elif code != 0:
                    detail = f"pytest exit {code}: {last}"
            verdict = "caught" if caught == runs else "NOT CAUGHT"
            missed += caught != runs
            print(f"{verdict:10} {bug.name:28} {caught}/{runs} runs, {time.monotonic() - t0:5.1f} s  {bug.what}")
            if detail:
                print(f"{'':10} {detail[:160]}")
            shutil.rmtree(copy, ignore_errors=True)
    print(f"\n{len(bugs) - missed} of {len(bugs)} planted bugs caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
