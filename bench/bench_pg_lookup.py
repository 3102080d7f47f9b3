"""Issue 12: `b24recover lookup <email|phone> --json` as whole processes on a 1,000,000-account
PostgreSQL store, against the same lookups on a 1,000,000-account SQLite store and against a
`python -c` running the same indexed query with psycopg2 alone (the floor), interleaved in one run.

Target: the PostgreSQL lookup's median <= 1.5x the SQLite lookup's.

    .venv/bin/python bench/bench_pg_lookup.py            # 1M accounts, 15 runs
    .venv/bin/python bench/bench_pg_lookup.py --quick    # 100k accounts, 5 runs

The server is B24RECOVER_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres); the
bench creates its own database b24bench_lookup_<n> and drops it at the end unless --keep.
"""

from __future__ import annotations

import io
import json
import os
import random
import time

import common as c

LIMIT_VS_SQLITE = 1.5
SERVER = os.environ.get("B24RECOVER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

FLOOR = ("import psycopg2, sys\n"
         "conn = psycopg2.connect(sys.argv[1])\n"
         "cur = conn.cursor()\n"
         "cur.execute('SELECT * FROM users WHERE {column} = %s', (sys.argv[2],))\n"
         "print(cur.fetchall())\n")


def _server():
    import psycopg2

    try:
        conn = psycopg2.connect(SERVER)
    except psycopg2.OperationalError as exc:
        raise SystemExit(f"no PostgreSQL server at {SERVER}: {str(exc).strip().splitlines()[0]}") from None
    conn.autocommit = True
    return conn


def build_pg(n: int, workdir, prefix: str = "b24bench_lookup") -> tuple[str, float]:
    """A database with `b24recover init`, then n accounts by COPY (indexes and full-text built as
    the rows go in, as on a store that grew by itself). Returns (URL, seconds)."""
    import psycopg2

    name = f"{prefix}_{n}"
    base = SERVER.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    t0 = time.perf_counter()
    admin = _server()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    run = c.run_process(c.b24(url, "init", "--json"), cwd=workdir)
    if run.returncode != 0:
        raise SystemExit(f"b24recover init failed ({run.returncode}): {run.stderr.decode(errors='replace')}")
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    columns = "login, login_key, email, email_key, phone, name, last_name, lang, created_at, updated_at, password_hash"
    chunk = 100_000
    rows = c._user_rows(n, int(time.time()))
    for start in range(0, n, chunk):
        buf = io.StringIO()
        for _, row in zip(range(chunk), rows):
            buf.write("\t".join(str(v) for v in row) + "\n")
        buf.seek(0)
        cur.copy_expert(f"COPY users ({columns}) FROM STDIN", buf)
        conn.commit()
    conn.autocommit = True
    cur.execute("VACUUM ANALYZE users")
    conn.close()
    seconds = time.perf_counter() - t0
    c.log(f"built {name}: {n:,} accounts in {seconds:.1f} s")
    return url, seconds


def drop_pg(url: str) -> None:
    admin = _server()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    admin.close()


def lookup_case(db, cwd, label, spell, pick):
    def run(r, rss=False):
        a = c.account(pick(r))
        out = c.expect(c.run_process(c.b24(db, "lookup", spell(a), "--json"), cwd=cwd, rss=rss),
                       f"lookup {spell(a)!r} on {label}")
        logins = [m["login"] for m in json.loads(out.stdout)["matches"]]
        if logins != [a["login"]]:
            raise SystemExit(f"lookup {spell(a)!r} on {label} found {logins}, expected {a['login']}")
        return out
    return run


def floor_case(url, cwd, column, field, pick):
    code = FLOOR.format(column=column)

    def run(r, rss=False):
        a = c.account(pick(r))
        out = c.expect(c.run_process([str(c.PY), "-c", code, url, a[field].casefold()], cwd=cwd, rss=rss),
                       "psycopg2 floor")
        if a["login"].encode() not in out.stdout:
            raise SystemExit(f"psycopg2 floor did not find {a['login']}")
        return out
    return run


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=None, help="accounts per store (default 1,000,000; quick 100,000)")
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    n = args.accounts or (100_000 if args.quick else 1_000_000)
    c.require_tool()
    with c.workdir("pg-lookup", args.keep) as tmp:
        sqlite_db = tmp / f"accounts-{n}.db"
        build = {"sqlite": round(c.build_store(sqlite_db, n, log=c.log), 2)}
        url, seconds = build_pg(n, tmp)
        build["postgresql"] = round(seconds, 2)
        try:
            rng = random.Random(2024)
            targets = {r: rng.randrange(n) for r in range(-warmup, runs)}
            pick = targets.__getitem__
            label = f"{n:,}"
            cases, names = [], {}
            for kind, column in (("email", "email_key"), ("phone", "phone")):
                spell = (lambda a, k=kind: a[k])
                names[kind, "pg"] = f"lookup {kind} @ PostgreSQL {label}"
                names[kind, "sqlite"] = f"lookup {kind} @ SQLite {label}"
                names[kind, "floor"] = f"psycopg2 -c {kind} @ PostgreSQL {label}"
                cases.append((names[kind, "pg"], lookup_case(url, tmp, "PostgreSQL", spell, pick)))
                cases.append((names[kind, "sqlite"], lookup_case(sqlite_db, tmp, "SQLite", spell, pick)))
                cases.append((names[kind, "floor"], floor_case(url, tmp, column, kind, pick)))
            c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
            samples = c.interleave(cases, runs, warmup, log=c.log)
            results = {name: c.stats(samples[name]) for name, _ in cases}
            load = os.getloadavg()
            for name, fn in cases:  # one more run each, wrapped by time(1), for peak memory only
                results[name]["peak_rss_mib"] = round(fn(0, rss=True).max_rss_kb / 1024, 1)
        finally:
            if not args.keep:
                drop_pg(url)

    med = {name: r["median_ms"] for name, r in results.items()}
    cpu = {name: r["cpu_median_ms"] for name, r in results.items()}
    ratios, checks = {}, []
    for kind in ("email", "phone"):
        pg, lite, floor = names[kind, "pg"], names[kind, "sqlite"], names[kind, "floor"]
        ratios[f"{kind}: PostgreSQL / SQLite lookup"] = c.ratio(med[pg], med[lite])
        ratios[f"{kind}: PostgreSQL lookup / psycopg2 floor"] = c.ratio(med[pg], med[floor])
        ratios[f"{kind}: PostgreSQL lookup - floor (ms)"] = round(med[pg] - med[floor], 1)
        # CPU time of the client, which other load on the machine cannot inflate (the server's
        # backend runs in its own process and is not in it).
        ratios[f"{kind}: PostgreSQL / SQLite lookup, cpu"] = c.ratio(cpu[pg], cpu[lite])
        ratios[f"{kind}: PostgreSQL lookup / psycopg2 floor, cpu"] = c.ratio(cpu[pg], cpu[floor])
        checks.append(c.check(f"lookup {kind}: PostgreSQL / SQLite", ratios[f"{kind}: PostgreSQL / SQLite lookup"],
                              LIMIT_VS_SQLITE, "x", f"{med[pg]:.1f} / {med[lite]:.1f} ms"))
    c.print_timings(f"lookup --json as whole processes; {runs} interleaved runs (+{warmup} warm-up) each", results)
    c.table("Ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    c.print_checks(checks)
    print(f"load average before {c.START_LOAD[0]:.1f}, after {load[0]:.1f} (2 cores are shared: wall times inflate with it)")
    c.write_report("pg_lookup", {
        "params": {"accounts": n, "runs": runs, "warmup": warmup, "quick": args.quick, "build_seconds": build,
                   "load_before": c.START_LOAD, "load_after": load},
        "measurements": results, "floor_code": FLOOR, "ratios": ratios, "checks": checks,
        "pass": all(ch["pass"] for ch in checks),
    }, quick=args.quick)


if __name__ == "__main__":
    main()
