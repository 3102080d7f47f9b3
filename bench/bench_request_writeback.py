"""Issue 11: `token request` with `[portal] write = true` against a real MariaDB portal must take
the same time whether or not the identifier names an account. Two cases as whole processes,
interleaved round by round in the same run: "matched" (a fresh synced portal account each run:
its portal row is re-read, a CHECKWORD written, a message delivered into the Maildir outbox) and
"unmatched" (an email no account has). Medians and p90 of each.

After every run the bench waits until the detached part is done (matched: the portal holds a
CHECKWORD and the mail arrived; both: the request's audit event), so no run overlaps the
previous one's background work; the waiting is not timed.

Target: max median / min median <= 1.05 and max p90 / min p90 <= 1.10.

    .venv/bin/python bench/bench_request_writeback.py            # 100 runs per case
    .venv/bin/python bench/bench_request_writeback.py --quick    # 20 runs per case
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import time
from pathlib import Path

import common as c

sys.path.insert(0, str(c.ROOT / "tests"))
from passlib.hash import sha512_crypt  # noqa: E402

from portal_db import PortalDB  # noqa: E402

LIMIT_MEDIAN, LIMIT_P90 = 1.05, 1.10
EVENTS = "SELECT count(*) FROM audit_log WHERE action IN ('token.request', 'token.request.refused')"


def populate(db: PortalDB, n: int) -> None:
    old = sha512_crypt.using(salt="AbCdEfGh12345678", rounds=5000).hash(b"Old-password-1")
    rows = [(f"u{i:05d}", old, f"u{i:05d}@example.com") for i in range(n)]
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO b_user (LOGIN, PASSWORD, EMAIL, ACTIVE, BLOCKED, TIMESTAMP_X)"
                        " VALUES (%s, %s, %s, 'Y', 'N', '2025-03-01 10:00:00')", rows)


def wait_for(what: str, done, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"the detached part never finished: {what}")
        time.sleep(0.005)


def pct(values: list[float], p: int) -> float:
    return round(statistics.quantiles(values, n=100)[p - 1], 2)


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0], runs=100, warmup=5)
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    if args.quick and args.runs is None:
        runs = 20
    c.require_tool()
    n = runs + warmup + 5
    db = PortalDB.create("mariadb")
    try:
        with c.workdir("request-writeback", args.keep) as work:
            populate(db, n)
            config = work / "b24recover.toml"
            config.write_text(f'portal_url = "https://portal.example.com"\n[portal]\ndsn = "{db.dsn}"\n'
                              "write = true\n", encoding="utf-8")
            store = work / "b24.db"
            c.init_store(store)

            def b24(*a: str) -> list[str]:
                return c.b24(store, "--config", str(config), *a)

            c.expect(c.run_process(b24("portal", "sync", "--json"), cwd=work), "portal sync")
            mail = work / "b24.db.outbox" / "mail" / "new"

            def events() -> int:
                con = sqlite3.connect(store)
                try:
                    return con.execute(EVENTS).fetchone()[0]
                finally:
                    con.close()

            def matched(r: int) -> c.Run:
                login = f"u{r + warmup:05d}"  # a fresh account each run: never throttled
                before, mails = events(), len(list(mail.iterdir())) if mail.is_dir() else 0
                run = c.expect(c.run_process(b24("token", "request", f"{login}@example.com"), cwd=work),
                               f"token request {login}")
                wait_for(f"CHECKWORD of {login}", lambda: db.query(
                    "SELECT CHECKWORD FROM b_user WHERE LOGIN = %s", (login,))[0][0] is not None)
                wait_for(f"mail to {login}", lambda: mail.is_dir() and len(list(mail.iterdir())) == mails + 1)
                wait_for("audit event", lambda: events() == before + 1)
                return run

            def unmatched(r: int) -> c.Run:
                before = events()
                run = c.expect(c.run_process(b24("token", "request", f"nobody{r + warmup}@example.com"), cwd=work),
                               "token request (unmatched)")
                wait_for("audit event", lambda: events() == before + 1)
                return run

            c.log(f"2 cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
            samples = c.interleave([("matched", matched), ("unmatched", unmatched)], runs, warmup, log=c.log)
            written = db.query("SELECT COUNT(*) FROM b_user WHERE CHECKWORD IS NOT NULL")[0][0]
            if written != runs + warmup:
                raise SystemExit(f"{written} CHECKWORDs written, expected {runs + warmup}")
    finally:
        db.drop()
    results = {}
    for name, got in samples.items():
        results[name] = c.stats(got)
        ms = results[name]["samples_ms"]
        results[name]["p10_ms"], results[name]["p90_ms"] = pct(ms, 10), pct(ms, 90)
    medians = {k: r["median_ms"] for k, r in results.items()}
    p90s = {k: r["p90_ms"] for k, r in results.items()}
    checks = [c.check("max median / min median", c.ratio(max(medians.values()), min(medians.values())),
                      LIMIT_MEDIAN, "ratio", f"matched {medians['matched']} ms, unmatched {medians['unmatched']} ms"),
              c.check("max p90 / min p90", c.ratio(max(p90s.values()), min(p90s.values())), LIMIT_P90, "ratio",
                      f"matched {p90s['matched']} ms, unmatched {p90s['unmatched']} ms")]
    c.table(f"token request, [portal] write = true, MariaDB; {runs} interleaved runs per case (+{warmup} warm-up)",
            ["case", "median ms", "p10", "p90", "q1", "q3", "cpu ms"],
            [[k, r["median_ms"], r["p10_ms"], r["p90_ms"], r["q1_ms"], r["q3_ms"], r["cpu_median_ms"]]
             for k, r in results.items()])
    c.print_checks(checks)
    c.write_report("request_writeback", {
        "params": {"runs": runs, "warmup": warmup, "quick": args.quick, "accounts": n},
        "measurements": results, "checks": checks, "pass": all(k["pass"] for k in checks),
    }, quick=args.quick)


if __name__ == "__main__":
    main()
