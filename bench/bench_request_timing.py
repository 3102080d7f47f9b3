"""Issue 13 item 5: `token request` must take the same time whatever happened. Five cases as
whole processes, interleaved round by round: a message sent (a fresh account with an email each
run, delivered into the Maildir outbox), an unknown identifier, a blocked account, a throttled
account (it got a control string moments ago) and a social-only account (no address on file).

Target: every case's median within 5 % of the others' (max median / min median <= 1.05);
p10/p90 reported beside the medians. A "sent" run checks that its message really arrived (it may
arrive after the process ended: delivery runs in a detached step), the others that none did.

    .venv/bin/python bench/bench_request_timing.py            # 200 runs per case
    .venv/bin/python bench/bench_request_timing.py --quick    # 20 runs per case
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path

import common as c

CASES = ("sent", "unknown", "blocked", "throttled", "social-only")
LIMIT = 1.05


def mail_new(db: Path) -> Path:
    return db.parent / f"{db.name}.outbox" / "mail" / "new"


def prepare(db: Path, n: int) -> dict:
    """Accounts 0..n-1 from common.account; account n-1 blocked, n-2 throttled (10 control
    strings in the last 24 h), one social-only account without address."""
    c.build_store(db, n, log=c.log)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        now = int(time.time())
        conn.execute("BEGIN IMMEDIATE")
        blocked = c.account(n - 1)
        conn.execute("UPDATE users SET blocked = 1 WHERE login = ?", (blocked["login"],))
        cur = conn.execute("INSERT INTO users (login, login_key, name, last_name, lang, created_at, updated_at)"
                           " VALUES ('social.only', 'social.only', 'Social', 'Only', 'en', ?, ?)", (now, now))
        conn.execute("INSERT INTO social_identities (user_id, provider, subject, created_at)"
                     " VALUES (?, 'vkontakte', '12345', ?)", (cur.lastrowid, now))
        # throttled for the whole run: its daily limit (10) is reached, not only the 60 s interval
        throttled = c.account(n - 2)
        (uid,) = conn.execute("SELECT id FROM users WHERE login = ?", (throttled["login"],)).fetchone()
        for k in range(10):
            conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                         " expires_at, ended_at) VALUES (?, 'link', 'none', ?, ?, ?, ?, ?)",
                         (uid, f"{k:064x}", "active" if k == 9 else "superseded", now, now + 86400,
                          None if k == 9 else now))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"blocked": blocked["email"], "throttled": throttled["email"], "social-only": "social.only",
            "unknown": "nobody.at.all@example.com"}


def wait_for_mail(db: Path, before: int, want: int, timeout: float = 10.0) -> int:
    new = mail_new(db)
    deadline = time.monotonic() + timeout
    while True:
        count = len(list(new.iterdir())) if new.is_dir() else 0
        if count - before >= want or time.monotonic() > deadline:
            return count - before
        time.sleep(0.01)


def make_cases(db: Path, idents: dict, warmup: int):
    counter = {"mail": 0}

    def sent(r, rss=False):
        a = c.account(r + warmup)  # a fresh account each run: never throttled
        run = c.expect(c.run_process(c.b24(db, "token", "request", a["email"]), cwd=db.parent, rss=rss),
                       f"token request {a['email']}")
        got = wait_for_mail(db, counter["mail"], 1)
        if got != 1:
            raise SystemExit(f"token request {a['email']}: {got} messages arrived instead of 1")
        counter["mail"] += 1
        return run

    def other(name):
        def run(r, rss=False):
            out = c.expect(c.run_process(c.b24(db, "token", "request", idents[name]), cwd=db.parent, rss=rss),
                           f"token request ({name})")
            return out
        return run

    return [("sent", sent)] + [(name, other(name)) for name in CASES[1:]]


def pct(values: list[float], p: int) -> float:
    return round(statistics.quantiles(values, n=100)[p - 1], 2)


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0], runs=200, warmup=5)
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    if args.quick and args.runs is None:
        runs = 20
    c.require_tool()
    with c.workdir("request-timing", args.keep) as tmp:
        db = tmp / "accounts.db"
        n = max(1_000, runs + warmup + 10)
        idents = prepare(db, n)
        cases = make_cases(db, idents, warmup)
        c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
        samples = c.interleave(cases, runs, warmup, log=c.log)
        mail = len(list(mail_new(db).iterdir()))
        expected = runs + warmup
        if mail != expected:
            raise SystemExit(f"{mail} messages in the Maildir, expected {expected}: only 'sent' runs may send")
    results = {}
    for name, _ in cases:
        results[name] = c.stats(samples[name])
        ms = results[name]["samples_ms"]
        results[name]["p10_ms"], results[name]["p90_ms"] = pct(ms, 10), pct(ms, 90)
        results[name]["peak_rss_mib"] = None
    medians = {name: r["median_ms"] for name, r in results.items()}
    spread = c.ratio(max(medians.values()), min(medians.values()))
    checks = [c.check("max median / min median", spread, LIMIT, "ratio",
                      f"slowest {max(medians, key=medians.get)}, fastest {min(medians, key=medians.get)}")]
    c.table(f"token request as whole processes; {runs} interleaved runs per case (+{warmup} warm-up)",
            ["case", "median ms", "p10", "p90", "q1", "q3", "cpu ms", "vs sent"],
            [[name, r["median_ms"], r["p10_ms"], r["p90_ms"], r["q1_ms"], r["q3_ms"], r["cpu_median_ms"],
              c.ratio(r["median_ms"], medians["sent"])] for name, r in results.items()])
    c.print_checks(checks)
    c.write_report("request_timing", {
        "params": {"runs": runs, "warmup": warmup, "quick": args.quick, "accounts": n},
        "measurements": results, "spread": spread, "checks": checks, "pass": checks[0]["pass"],
    }, quick=args.quick)


if __name__ == "__main__":
    main()
