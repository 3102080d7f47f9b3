"""Issue 6: `audit tokens --purge` of 1,000,000 stale control strings as a whole process, alone
and while other processes issue control strings; and the longest wait of such a `token issue`.

Targets: the purge of 1,000,000 stale control strings <= 15 s; during it, the longest wait of a
concurrent `token issue` <= 1 s.

    .venv/bin/python bench/bench_purge.py            # 1,000,000 stale rows, 10,000 accounts
    .venv/bin/python bench/bench_purge.py --quick    # 100,000 stale rows, 2,000 accounts
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import common as c

DAY = 86400
PURGE_LIMIT_S = 15.0
WAIT_LIMIT_S = 1.0
ACTIVE = 500  # accounts with a valid control string that must survive the purge

# A probe in its own process, on the service layer: the time of each `token issue` call is the
# wait for the write lock plus its own short transaction, without interpreter start-up.
PROBE = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])
import common
from b24recover.config import load_settings
from b24recover.services.context import Ctx
from b24recover.services.tokens import issue
from b24recover.store.db import open_store
db, stop, first, step = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = Ctx(store=open_store(db), settings=load_settings(None, db), actor="bench-probe")
samples, i = [], 0
while not stop.exists():
    login = common.account(first + (i % step))["login"]
    t0 = time.perf_counter()
    issue(ctx, login, "none", None, True)
    samples.append([time.time(), time.perf_counter() - t0])
    i += 1
    time.sleep(0.02)
print(json.dumps(samples))
"""


def fill(db: Path, rows: int, accounts: int, log) -> dict:
    """Stale control strings straight into the store: ended 31-395 days ago, superseded, used and
    revoked in turn, spread over every account, with random secret hashes (as real ones are);
    one long-expired but never ended string per account for the first thousand accounts; and
    ACTIVE valid ones that the purge must leave alone."""
    t0 = time.perf_counter()
    now = int(time.time())
    states = ("superseded", "used", "revoked")
    expired = min(1000, accounts - ACTIVE - 200)

    def stale_rows():
        for i in range(rows):
            ended = now - 31 * DAY - (i * 364 * DAY) // rows
            yield (1 + (i * 7919) % accounts, os.urandom(32).hex(), states[i % 3], ended - 600, ended + 86400, ended)

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a bench fixture, rebuilt if the machine dies
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                         " expires_at, ended_at) VALUES (?, 'link', 'email', ?, ?, ?, ?, ?)", stale_rows())
        conn.executemany("INSERT INTO control_strings (user_id, kind, channel, secret_hash, created_at, expires_at)"
                         " VALUES (?, 'link', 'email', ?, ?, ?)",
                         ((accounts - i, os.urandom(32).hex(), now - 60 * DAY, now - 59 * DAY) for i in range(expired)))
        conn.executemany("INSERT INTO control_strings (user_id, kind, channel, secret_hash, created_at, expires_at)"
                         " VALUES (?, 'link', 'email', ?, ?, ?)",
                         ((1 + i, os.urandom(32).hex(), now, now + 86400) for i in range(ACTIVE)))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    log(f"filled {rows:,} stale + {expired:,} expired + {ACTIVE} active control strings in "
        f"{time.perf_counter() - t0:.1f} s, store {db.stat().st_size / 2**20:.0f} MiB")
    return {"stale": rows + expired, "active": ACTIVE}


def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy with the key file beside it (the source is idle and checkpointed)."""
    conn = sqlite3.connect(src)
    try:
        conn.execute(f"VACUUM INTO '{dst}'")
    finally:
        conn.close()
    shutil.copy2(Path(f"{src}.key"), Path(f"{dst}.key"))


def check_after(db: Path, expected: dict, report: dict, what: str) -> None:
    if report["purged"] != expected["stale"]:
        raise SystemExit(f"{what}: purged {report['purged']}, expected {expected['stale']}")
    conn = sqlite3.connect(db)
    try:
        active = conn.execute("SELECT count(*) FROM control_strings WHERE state = 'active'"
                              " AND expires_at > strftime('%s', 'now')").fetchone()[0]
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if active < expected["active"] or ok != "ok":
        raise SystemExit(f"{what}: {active} valid control strings left (expected >= {expected['active']}), "
                         f"quick_check {ok}")


def purge(db: Path) -> tuple[c.Run, dict]:
    run = c.expect(c.run_process(c.b24(db, "audit", "tokens", "--purge", "--json"), cwd=db.parent),
                   "audit tokens --purge")
    return run, json.loads(run.stdout)


class Probes:
    """While running: one service-layer probe process, plus whole `token issue` processes in a
    thread, each on accounts of its own (so no throttling and no shared supersedes)."""

    def __init__(self, db: Path, first: int, count: int):
        self.db, self.first, self.count = db, first, count
        self.stop_file = db.parent / f"stop-{first}"
        self.process_samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def __enter__(self):
        self.probe = subprocess.Popen(
            [str(c.PY), "-c", PROBE, str(self.db), str(self.stop_file), str(self.first), str(self.count // 2),
             str(c.BENCH)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.db.parent, env=c.clean_env())
        self.thread = threading.Thread(target=self._processes, daemon=True)
        self.thread.start()
        return self

    def _processes(self) -> None:
        i = 0
        while not self._done.is_set():
            login = c.account(self.first + self.count // 2 + (i % (self.count // 2)))["login"]
            at = time.time()
            run = c.expect(c.run_process(c.b24(self.db, "token", "issue", login, "--via", "none", "--force", "--json"),
                                         cwd=self.db.parent), f"token issue {login}")
            self.process_samples.append((at, run.seconds))
            i += 1

    def __exit__(self, *exc):
        self.stop_file.touch()
        self._done.set()
        out, err = self.probe.communicate(timeout=120)
        self.thread.join(timeout=120)
        self.stop_file.unlink()
        if self.probe.returncode != 0:
            raise SystemExit(f"probe failed: {err.decode(errors='replace')[-800:]}")
        self.call_samples = [tuple(s) for s in json.loads(out)]
        return False


def spread(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "median_ms": round(c.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "max_ms": round(ms[-1], 1)}


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=None, help="stale control strings (default 1,000,000; quick 100,000)")
    p.add_argument("--accounts", type=int, default=None, help="accounts (default 10,000; quick 2,000)")
    p.add_argument("--baseline", type=float, default=6.0, help="seconds of probes before the purge (default 6)")
    args = p.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    accounts = args.accounts or (2_000 if args.quick else 10_000)
    if accounts < ACTIVE + 400:
        raise SystemExit(f"--accounts must be at least {ACTIVE + 400}")
    c.require_tool()
    limit = PURGE_LIMIT_S * rows / 1_000_000

    with c.workdir("purge", args.keep) as tmp:
        alone_db, busy_db = tmp / "alone.db", tmp / "busy.db"
        build_s = c.build_store(alone_db, accounts, log=c.log)
        expected = fill(alone_db, rows, accounts, c.log)
        copy_store(alone_db, busy_db)
        c.log("purge alone")
        alone, alone_report = purge(alone_db)
        check_after(alone_db, expected, alone_report, "purge alone")
        c.log(f"  {alone.seconds:.1f} s wall, {alone.cpu_seconds:.1f} s CPU, {alone_report['batches']} batches")

        # probes on accounts without any control string of the fill (ACTIVE .. accounts - expired)
        c.log(f"baseline: {args.baseline:.0f} s of token issues without a purge")
        with Probes(busy_db, ACTIVE + 1, 200) as base:
            time.sleep(args.baseline)
        c.log("purge while token issues run")
        with Probes(busy_db, ACTIVE + 1, 200) as busy:
            time.sleep(1.0)
            t0 = time.time()
            under_load, busy_report = purge(busy_db)
            t1 = time.time()
        check_after(busy_db, expected, busy_report, "purge under load")

    during_calls = [s for at, s in busy.call_samples if t0 <= at <= t1]
    during_procs = [s for at, s in busy.process_samples if t0 <= at <= t1]
    results = {
        "rows": rows, "accounts": accounts, "store_build_s": round(build_s, 1),
        "purge_alone": {"wall_s": round(alone.seconds, 2), "cpu_s": round(alone.cpu_seconds, 2),
                        "batches": alone_report["batches"], "yielded_s": alone_report["yielded_seconds"],
                        "purged": alone_report["purged"]},
        "purge_under_load": {"wall_s": round(under_load.seconds, 2), "cpu_s": round(under_load.cpu_seconds, 2),
                             "batches": busy_report["batches"], "yielded_s": busy_report["yielded_seconds"]},
        "token_issue_call": {"baseline": spread([s for _, s in base.call_samples]),
                             "during_purge": spread(during_calls)},
        "token_issue_process": {"baseline": spread([s for _, s in base.process_samples]),
                                "during_purge": spread(during_procs)},
    }
    longest = max(during_calls, default=0.0)
    proc_base = c.median([s for _, s in base.process_samples]) if base.process_samples else 0.0
    proc_excess = max(during_procs, default=0.0) - proc_base
    checks = [
        c.check(f"purge of {rows:,} alone", alone.seconds, limit, "s",
                "whole process, wall" + ("" if rows == 1_000_000 else " (limit scaled to the rows)")),
        c.check("longest token issue wait during the purge", longest, WAIT_LIMIT_S, "s",
                "issue() call in a probe process: lock wait + its transaction"),
    ]
    c.table("Purge", ["run", "wall s", "CPU s", "batches", "yielded s"],
            [["alone", alone.seconds, alone.cpu_seconds, alone_report["batches"], alone_report["yielded_seconds"]],
             ["with token issues", under_load.seconds, under_load.cpu_seconds, busy_report["batches"],
              busy_report["yielded_seconds"]]])
    c.table("Concurrent token issue", ["measured", "when", "n", "median ms", "p95 ms", "max ms"],
            [[what, when, d.get("n"), d.get("median_ms"), d.get("p95_ms"), d.get("max_ms")]
             for what, key in (("issue() call", "token_issue_call"), ("whole process", "token_issue_process"))
             for when, d in results[key].items()])
    print(f"\nwhole `token issue` process: longest during the purge exceeds the baseline median by "
          f"{proc_excess * 1000:.0f} ms")
    c.print_checks(checks)
    c.write_report("purge", {"results": results, "process_excess_ms": round(proc_excess * 1000, 1),
                             "checks": checks, "pass": all(x["pass"] for x in checks)})


if __name__ == "__main__":
    main()
