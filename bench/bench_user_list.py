"""`user list` of a large store at a terminal (issue 9): time to the first screen and to the end
on a pseudo-terminal, against the same listing piped, in the same run.

A pseudo-terminal of 120 x 40 is read as fast as it fills (as a terminal emulator would); "first
screen" is the moment 40 lines have arrived (or the process ended). Cases, interleaved:
  tty-all     user list --limit 0 on the terminal, no pager (PAGER=)
  tty-pager   user list --limit 0 on the terminal, through PAGER=cat (a pager that shows everything)
  tty-default user list (the default limit, 1000) on the terminal
  piped-all   user list --limit 0 | reader
With --old REV, the same tty-all and piped-all cases also run the code of git revision REV
(e.g. 5a5ea33, before this change: a rich table), once per round.

    .venv/bin/python bench/bench_user_list.py            # 20,000 accounts, 5 rounds
    .venv/bin/python bench/bench_user_list.py --old 5a5ea33 --runs 3
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import tarfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

COLS, ROWS = 120, 40


def on_pty(argv: list[str], env: dict, cwd: Path | None = None) -> dict:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd,
                             start_new_session=True, close_fds=True)
    os.close(slave)
    lines, first, size = 0, None, 0
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            child.kill()
            raise SystemExit(f"no output for 300 s from {argv}")
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        size += len(chunk)
        lines += chunk.count(b"\n")
        if first is None and lines >= ROWS:
            first = time.perf_counter() - t0
    os.close(master)
    child.wait()
    end = time.perf_counter() - t0
    return {"first": first if first is not None else end, "end": end, "lines": lines, "bytes": size,
            "code": child.returncode}


def piped(argv: list[str], env: dict, cwd: Path | None = None) -> dict:
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=env, cwd=cwd)
    first, lines, size = None, 0, 0
    while True:
        chunk = child.stdout.read1(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        lines += chunk.count(b"\n")
        if first is None and lines >= ROWS:
            first = time.perf_counter() - t0
    child.wait()
    end = time.perf_counter() - t0
    return {"first": first if first is not None else end, "end": end, "lines": lines, "bytes": size,
            "code": child.returncode}


def old_tree(rev: str, where: Path) -> Path:
    """The package as it was at `rev`, unpacked beside the stores (run through PYTHONPATH)."""
    dest = where / f"old-{rev}"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(c.ROOT), "archive", rev, "b24recover"], capture_output=True, check=True)
    tar = dest / "src.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as t:
        t.extractall(dest)
    return dest


def main() -> None:
    p = c.arg_parser(__doc__.splitlines()[0], runs=5, warmup=1)
    p.add_argument("--accounts", type=int, default=None, help="accounts in the store (default 20,000; quick 2,000)")
    p.add_argument("--old", default=None, metavar="REV", help="also run the code of this git revision")
    args = p.parse_args()
    c.require_tool()
    runs, warmup = c.runs_of(args)
    n = args.accounts or (2000 if args.quick else 20000)
    with c.workdir("user-list", args.keep) as where:
        db = where / "users.db"
        c.build_store(db, n, log=c.log)
        base = c.clean_env(COLUMNS=str(COLS), LINES=str(ROWS), TERM="xterm")
        base.pop("NO_COLOR", None)
        cmd = c.b24(db, "user", "list", "--limit", "0")
        cases = {
            "tty-all": lambda: on_pty(cmd, {**base, "PAGER": ""}),
            "tty-pager": lambda: on_pty(cmd, {**base, "PAGER": "cat"}),
            "tty-default": lambda: on_pty(c.b24(db, "user", "list"), {**base, "PAGER": ""}),
            "piped-all": lambda: piped(cmd, base),
        }
        if args.old:
            tree = old_tree(args.old, where)
            old_env = {**base, "PYTHONPATH": str(tree), "PAGER": ""}
            old_cmd = [str(c.PY), "-m", "b24recover", "--db", str(db), "user", "list"]
            # cwd: `python -m` puts the current folder first on sys.path; it must not be this checkout
            cases["old-tty-all"] = lambda: on_pty(old_cmd, old_env, tree)
            cases["old-piped-all"] = lambda: piped(old_cmd, old_env, tree)
        results: dict[str, list[dict]] = {name: [] for name in cases}
        names = list(cases)
        for r in range(-warmup, runs):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                if name.startswith("old-tty") and r < 0:
                    continue  # the old terminal case is slow; no warm-up for it
                got = cases[name]()
                if got["code"] != 0 or got["lines"] < min(n, 1000) or (name.endswith("-all") and got["lines"] < n):
                    raise SystemExit(f"{name}: exit {got['code']}, {got['lines']} lines")
                if r >= 0:
                    results[name].append(got)
            c.log(f"round {r + 1}/{runs} done" if r >= 0 else "warm-up done")
    summary = {}
    for name, got in results.items():
        summary[name] = {"first_screen_s": round(c.median(g["first"] for g in got), 3),
                         "end_s": round(c.median(g["end"] for g in got), 3),
                         "lines": got[0]["lines"], "runs": len(got)}
    piped_end = summary["piped-all"]["end_s"]
    rows = [[name, s["first_screen_s"], s["end_s"], round(s["end_s"] / piped_end, 2), s["lines"]]
            for name, s in summary.items()]
    c.table(f"user list, {n:,} accounts, {COLS}x{ROWS} terminal (medians of {runs})",
            ["case", "first screen s", "end s", "end / piped", "lines"], rows)
    c.write_report("user_list", {"accounts": n, "terminal": [COLS, ROWS], "cases": summary,
                                 "load": os.getloadavg()}, quick=args.quick)


if __name__ == "__main__":
    main()
