"""Issue 12: `redeem LOGIN --control-string-stdin --password-stdin --json` (bcrypt cost 12, the
"password changed" notice into the Maildir outbox) and `token issue --via email` as whole
processes on a PostgreSQL store, interleaved with the same commands on a SQLite store and with
one in-process bcrypt_sha256 cost-12 hash, in one run.

Reported: the medians, PostgreSQL / SQLite and PostgreSQL - SQLite (no target in the issue).

    .venv/bin/python bench/bench_pg_redeem.py            # 10,000 accounts each, 15 runs
    .venv/bin/python bench/bench_pg_redeem.py --quick    # 1,000 accounts, 5 runs

The server is B24RECOVER_BENCH_PG, as for bench_pg_lookup.py; the database b24bench_redeem_<n>
is made and dropped (unless --keep).
"""

from __future__ import annotations

from pathlib import Path

import common as c
from bench_pg_lookup import build_pg, drop_pg
from bench_tokens import Maildir, in_process_cases, issue_case, pre_issue, redeem_case


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=None, help="accounts per store (default 10,000; quick 1,000)")
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    n = args.accounts or (1_000 if args.quick else 10_000)
    rounds = runs + warmup + 1  # + one run under time(1) for peak memory
    if n < 2 * rounds:
        raise SystemExit(f"--accounts must be at least {2 * rounds} for {runs} runs")
    c.require_tool()
    passlib_run, _ = in_process_cases()
    with c.workdir("pg-redeem", args.keep) as tmp:
        sqlite_db = tmp / "accounts.db"
        build = {"sqlite": round(c.build_store(sqlite_db, n, log=c.log), 2)}
        url, seconds = build_pg(n, tmp, prefix="b24bench_redeem")
        build["postgresql"] = round(seconds, 2)
        try:
            # Commands run in tmp, so a PostgreSQL store's key and outbox are tmp/b24recover-<db>.*
            stores = {"PostgreSQL": (url, Maildir(tmp / f"b24recover-{url.rsplit('/', 1)[1]}")),
                      "SQLite": (sqlite_db, Maildir(sqlite_db))}
            issue_pick = lambda r: (r + warmup) * 2  # noqa: E731  a fresh account per run: no throttle
            redeem_pick = lambda r: (r + warmup) * 2 + 1  # noqa: E731
            cases, names = [], {}
            c.log(f"issuing {2 * rounds} control strings for the redeem runs (untimed)")
            for engine, (db, maildir) in stores.items():
                strings = {redeem_pick(r): pre_issue(_Db(db, tmp), c.account(redeem_pick(r))["login"])
                           for r in range(-warmup, runs + 1)}
                names["redeem", engine] = f"redeem @ {engine} (bcrypt 12, notice)"
                names["issue", engine] = f"token issue --via email @ {engine}"
                cases.append((names["redeem", engine], redeem_case(_Db(db, tmp), maildir, redeem_pick, strings)))
                cases.append((names["issue", engine], issue_case(_Db(db, tmp), maildir, issue_pick)))
            names["bcrypt"] = "bcrypt_sha256 cost 12 (in-process)"
            cases.append((names["bcrypt"], passlib_run))
            c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
            samples = c.interleave(cases, runs, warmup, log=c.log)
            results = {name: c.stats(samples[name]) for name, _ in cases}
            for name, fn in cases:
                peak = fn(runs, rss=True).max_rss_kb
                results[name]["peak_rss_mib"] = round(peak / 1024, 1) if peak else None
        finally:
            if not args.keep:
                drop_pg(url)

    med = {name: r["median_ms"] for name, r in results.items()}
    cpu = {name: r["cpu_median_ms"] for name, r in results.items()}
    ratios = {}
    for what in ("redeem", "issue"):
        pg, lite = names[what, "PostgreSQL"], names[what, "SQLite"]
        ratios[f"{what}: PostgreSQL / SQLite"] = c.ratio(med[pg], med[lite])
        ratios[f"{what}: PostgreSQL - SQLite (ms)"] = round(med[pg] - med[lite], 1)
        ratios[f"{what}: PostgreSQL / SQLite, cpu"] = c.ratio(cpu[pg], cpu[lite])
    for engine in ("PostgreSQL", "SQLite"):
        ratios[f"redeem @ {engine} - bcrypt (ms)"] = round(med[names["redeem", engine]] - med[names["bcrypt"]], 1)
    c.print_timings(f"redeem and token issue as whole processes; {runs} interleaved runs (+{warmup} warm-up)", results)
    c.table("Ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    print(f"load average before {c.START_LOAD[0]:.1f} (2 cores are shared: wall times inflate with it)")
    c.write_report("pg_redeem", {
        "params": {"accounts": n, "runs": runs, "warmup": warmup, "quick": args.quick, "build_seconds": build},
        "measurements": results, "ratios": ratios, "checks": [], "pass": True,
    }, quick=args.quick)


class _Db:
    """What bench_tokens' cases take as `db`: `str()` is the --db value, `.parent` the folder the
    command runs in (for a URL, the folder that holds its key file and outbox)."""

    def __init__(self, db, folder: Path):
        self.db, self.parent = str(db), folder

    def __str__(self) -> str:
        return self.db


if __name__ == "__main__":
    main()
