"""Issue 12: `audit tokens --purge` of 1,000,000 stale control strings on a PostgreSQL store, alone
and while other processes issue control strings (bench_purge.py's probes, on the same store).

Targets (as on SQLite): the purge <= 15 s; the longest wait of a concurrent `token issue`
(a service-layer `issue()` call in a probe process) during it <= 1 s.

    .venv/bin/python bench/bench_pg_purge.py            # 1,000,000 stale rows, 10,000 accounts
    .venv/bin/python bench/bench_pg_purge.py --quick    # 100,000 stale rows, 2,000 accounts

The server is B24RECOVER_BENCH_PG, as for bench_pg_lookup.py; the databases b24bench_purge_<n>
and its copy b24bench_purge_<n>_busy (CREATE DATABASE ... TEMPLATE) are dropped afterwards
unless --keep.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time

import common as c
from bench_pg_lookup import _server, build_pg, drop_pg
from bench_pg_redeem import _Db
from bench_purge import ACTIVE, DAY, PURGE_LIMIT_S, WAIT_LIMIT_S, Probes, spread


def fill(url: str, rows: int, accounts: int) -> dict:
    """The same rows as bench_purge.fill (stale, long-expired, valid), by COPY."""
    import psycopg2

    t0 = time.perf_counter()
    now = int(time.time())
    states = ("superseded", "used", "revoked")
    expired = min(1000, accounts - ACTIVE - 200)
    buf = io.StringIO()
    for i in range(rows):
        ended = now - 31 * DAY - (i * 364 * DAY) // rows
        buf.write(f"{1 + (i * 7919) % accounts}\t{os.urandom(32).hex()}\t{states[i % 3]}\t{ended - 600}\t"
                  f"{ended + 86400}\t{ended}\n")
    for i in range(expired):
        buf.write(f"{accounts - i}\t{os.urandom(32).hex()}\tactive\t{now - 60 * DAY}\t{now - 59 * DAY}\t\\N\n")
    for i in range(ACTIVE):
        buf.write(f"{1 + i}\t{os.urandom(32).hex()}\tactive\t{now}\t{now + 86400}\t\\N\n")
    buf.seek(0)
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.copy_expert("COPY control_strings (kind, channel, user_id, secret_hash, state, created_at, expires_at, ended_at)"
                        " FROM STDIN", _with_defaults(buf))
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE control_strings")
    finally:
        conn.close()
    c.log(f"filled {rows:,} stale + {expired:,} expired + {ACTIVE} active control strings in "
          f"{time.perf_counter() - t0:.1f} s")
    return {"stale": rows + expired, "active": ACTIVE}


def _with_defaults(buf: io.StringIO) -> io.StringIO:
    """kind and channel have no defaults: add 'link' and 'email' to every line."""
    return io.StringIO("".join(f"link\temail\t{line}" for line in buf))


def copy_db(url: str, tmp, suffix: str) -> str:
    """A copy of the (idle) database, with its key file beside the commands' folder."""
    src = url.rsplit("/", 1)[1]
    dst = f"{src}_{suffix}"
    admin = _server()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {dst}")
    admin.cursor().execute(f"CREATE DATABASE {dst} TEMPLATE {src}")
    admin.close()
    shutil.copy2(tmp / f"b24recover-{src}.key", tmp / f"b24recover-{dst}.key")
    return f"{url.rsplit('/', 1)[0]}/{dst}"


def check_after(url: str, expected: dict, report: dict, what: str) -> None:
    import psycopg2

    if report["purged"] != expected["stale"]:
        raise SystemExit(f"{what}: purged {report['purged']}, expected {expected['stale']}")
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM control_strings WHERE state = 'active'"
                    " AND expires_at > extract(epoch FROM now())")
        active = cur.fetchone()[0]
    finally:
        conn.close()
    if active < expected["active"]:
        raise SystemExit(f"{what}: {active} valid control strings left (expected >= {expected['active']})")


def purge(db) -> tuple[c.Run, dict]:
    run = c.expect(c.run_process(c.b24(db, "audit", "tokens", "--purge", "--json"), cwd=db.parent),
                   "audit tokens --purge")
    return run, json.loads(run.stdout)


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
    urls = []
    with c.workdir("pg-purge", args.keep) as tmp:
        try:
            url, build_s = build_pg(accounts, tmp, prefix="b24bench_purge")
            urls.append(url)
            expected = fill(url, rows, accounts)
            busy_url = copy_db(url, tmp, "busy")
            urls.append(busy_url)
            alone_db, busy_db = _Db(url, tmp), _Db(busy_url, tmp)
            c.log("purge alone")
            alone, alone_report = purge(alone_db)
            check_after(url, expected, alone_report, "purge alone")
            c.log(f"  {alone.seconds:.1f} s wall, {alone.cpu_seconds:.1f} s CPU, {alone_report['batches']} batches")
            c.log(f"baseline: {args.baseline:.0f} s of token issues without a purge")
            with Probes(busy_db, ACTIVE + 1, 200) as base:
                time.sleep(args.baseline)
            c.log("purge while token issues run")
            with Probes(busy_db, ACTIVE + 1, 200) as busy:
                time.sleep(1.0)
                t0 = time.time()
                under_load, busy_report = purge(busy_db)
                t1 = time.time()
            check_after(busy_url, expected, busy_report, "purge under load")
        finally:
            if not args.keep:
                for u in urls:
                    drop_pg(u)

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
    checks = [
        c.check(f"purge of {rows:,} alone (PostgreSQL)", alone.seconds, limit, "s",
                "whole process, wall" + ("" if rows == 1_000_000 else " (limit scaled to the rows)")),
        c.check("longest token issue wait during the purge", max(during_calls, default=0.0), WAIT_LIMIT_S, "s",
                "issue() call in a probe process: lock wait + its transaction"),
    ]
    c.table("Purge on PostgreSQL", ["run", "wall s", "CPU s", "batches", "yielded s"],
            [["alone", alone.seconds, alone.cpu_seconds, alone_report["batches"], alone_report["yielded_seconds"]],
             ["with token issues", under_load.seconds, under_load.cpu_seconds, busy_report["batches"],
              busy_report["yielded_seconds"]]])
    c.table("Concurrent token issue", ["measured", "when", "n", "median ms", "p95 ms", "max ms"],
            [[what, when, d.get("n"), d.get("median_ms"), d.get("p95_ms"), d.get("max_ms")]
             for what, key in (("issue() call", "token_issue_call"), ("whole process", "token_issue_process"))
             for when, d in results[key].items()])
    c.print_checks(checks)
    c.write_report("pg_purge", {"results": results, "checks": checks, "pass": all(x["pass"] for x in checks)},
                   quick=args.quick)


if __name__ == "__main__":
    main()
