"""Issue 11: the cost of portal write-back, as whole processes against a real MariaDB portal.

- `reset LOGIN --password-stdin --no-notify` with `[portal] write = true` vs `write = false`, on
  the same synced store and portal, interleaved (A B A B ...), medians.
- `bulk reset` of 2,000 accounts (`--mode temporary-password --restart --no-notify`) with and
  without write-back, interleaved, medians.

With write-back every new password is also hashed as Bitrix `$6$` (plus a random checkword, both
pure-Python SHA-512-crypt) and written in one portal transaction per account after each chunk.
bcrypt runs at the shipped cost 12 for `reset`; `bulk reset` uses cost 8 to keep a
run under a minute on 2 shared cores; the write-back work does not depend on it.

    .venv/bin/python bench/bench_writeback.py            # reset 15 runs each, bulk 3 each, 2,000 accounts
    .venv/bin/python bench/bench_writeback.py --quick    # reset 5, bulk 2, 200 accounts
"""

from __future__ import annotations

import json
import sys

import common as c

sys.path.insert(0, str(c.ROOT / "tests"))
from passlib.hash import sha512_crypt  # noqa: E402

from portal_db import PortalDB  # noqa: E402

BULK = 2000


def populate(db: PortalDB, n: int) -> None:
    old = sha512_crypt.using(salt="AbCdEfGh12345678", rounds=5000).hash(b"Old-password-1")
    rows = [(f"u{i:05d}", old, f"u{i:05d}@example.com") for i in range(n + 1)]
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO b_user (LOGIN, PASSWORD, EMAIL, ACTIVE, BLOCKED, TIMESTAMP_X)"
                        " VALUES (%s, %s, %s, 'Y', 'N', '2025-03-01 10:00:00')", rows)


def main() -> None:
    p = c.arg_parser("reset and bulk reset with portal write-back vs without", runs=15, warmup=2)
    args = p.parse_args()
    c.require_tool()
    runs, warmup = c.runs_of(args)
    bulk_runs = 2 if args.quick else 3
    n = 200 if args.quick else BULK
    db = PortalDB.create("mariadb")
    try:
        with c.workdir("writeback", args.keep) as work:
            populate(db, n)
            configs = {}
            for name, write in (("with write-back", "true"), ("without", "false")):
                for rounds in (12, 8):
                    path = work / f"{'on' if write == 'true' else 'off'}-{rounds}.toml"
                    path.write_text(f'portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = {rounds}\n'
                                    f'[portal]\ndsn = "{db.dsn}"\nwrite = {write}\n', encoding="utf-8")
                    configs[(name, rounds)] = path
            store = work / "b24.db"
            c.init_store(store)
            c.expect(c.run_process(c.b24(store, "--config", str(configs[("without", 12)]), "portal", "sync", "--json"),
                                   cwd=work), "portal sync")
            counter = iter(range(10**6))

            def reset(name: str):
                def one(_r: int) -> c.Run:
                    argv = c.b24(store, "--config", str(configs[(name, 12)]), "reset", "u00000", "--password-stdin",
                                 "--no-notify")
                    return c.expect(c.run_process(argv, stdin=f"bench password {next(counter)} xyz\n".encode(),
                                                  cwd=work), f"reset ({name})")
                return one

            c.log(f"reset: {runs} runs each, {warmup} warm-up")
            reset_runs = c.interleave([(k, reset(k)) for k in ("with write-back", "without")], runs, warmup, log=c.log)

            source = work / "logins.txt"
            source.write_text("\n".join(f"u{i:05d}" for i in range(1, n + 1)) + "\n")

            def bulk(name: str):
                def one(r: int) -> c.Run:
                    out = work / f"pw-{name[:4].strip()}-{r}-{next(counter)}.csv"
                    argv = c.b24(store, "--config", str(configs[(name, 8)]), "bulk", "reset", str(source), "--mode",
                                 "temporary-password", "--out", str(out), "--restart", "--no-notify", "--json")
                    run = c.expect(c.run_process(argv, cwd=work), f"bulk reset ({name})")
                    assert json.loads(run.stdout)["done"] == n
                    c.log(f"  bulk {name}: {run.seconds:.1f} s")
                    return run
                return one

            c.log(f"bulk reset of {n}: {bulk_runs} runs each")
            bulk_samples = c.interleave([(k, bulk(k)) for k in ("with write-back", "without")], bulk_runs, 0)
            written = db.query("SELECT COUNT(*) FROM b_user_password")[0][0]
    finally:
        db.drop()
    results = {"reset": {k: c.stats(v) for k, v in reset_runs.items()},
               f"bulk reset {n}": {k: c.stats(v) for k, v in bulk_samples.items()}}
    for title, res in results.items():
        print(f"\n{title}")
        for name, r in res.items():
            print(f"  {name:16} median {r['median_ms']:10.1f} ms  (q1 {r['q1_ms']:.1f}, q3 {r['q3_ms']:.1f}, "
                  f"runs {r['runs']})")
        print(f"  ratio with/without: {c.ratio(res['with write-back']['median_ms'], res['without']['median_ms'])}")
    c.write_report("writeback", {"accounts": n, "portal_history_rows": written, "results": results,
                                 "ratios": {t: c.ratio(r["with write-back"]["median_ms"], r["without"]["median_ms"])
                                            for t, r in results.items()}}, quick=args.quick)


if __name__ == "__main__":
    main()
