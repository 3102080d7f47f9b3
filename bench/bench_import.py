"""Issue 2: `b24recover user import FILE --format csv` of 1,000,000 csv rows carrying existing
Bitrix password hashes, as a whole process on a fresh store: wall time and peak memory, next to
a floor measured in the same run (a `python -c` that reads the same csv with the csv module and
inserts it with sqlite3 executemany in 1,000-row transactions, no validation).

Targets: <= 90 s and peak memory <= 200 MB for 1,000,000 rows (time scales with --rows).

    .venv/bin/python bench/bench_import.py                 # 1,000,000 rows, 1 run
    .venv/bin/python bench/bench_import.py --quick         # 100,000 rows
    .venv/bin/python bench/bench_import.py --rows 250000 --runs 3
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import common as c

FULL_ROWS = 1_000_000
LIMIT_S = 90.0
LIMIT_MB = 200.0  # 10^6 bytes
HEADER = ("login", "email", "phone", "name", "last_name", "lang", "password_hash", "social", "blocked")

# The storage work of an import with nothing else: same pragmas and batch size as the tool.
FLOOR = """\
import csv, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[2], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA synchronous = FULL")
SQL = ("INSERT INTO users (login, login_key, email, email_key, phone, name, last_name, lang,"
       " password_hash, blocked, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
now, batch = int(time.time()), []
def flush():
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQL, batch)
    conn.execute("COMMIT")
    batch.clear()
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    next(rows)
    for login, email, phone, name, last, lang, pw, social, blocked in rows:
        batch.append((login, login.casefold(), email or None, email.casefold() or None, phone or None,
                      name, last, lang, pw or None, int(blocked), now, now))
        if len(batch) == 1000:
            flush()
if batch:
    flush()
"""


def sha512_pool(size: int = 256) -> list[str]:
    """Real Bitrix `$6$` hashes (crypt with a 16-character salt, 5000 rounds), reused round-robin:
    computing a million of them would take longer than the import."""
    try:
        from passlib.hash import sha512_crypt
    except ImportError:
        return []
    hasher = sha512_crypt.using(rounds=5000, salt_size=16)
    return [hasher.hash(f"legacy-{i}") for i in range(size)]


def csv_row(i: int, pool: list[str]) -> tuple:
    """A b_user-like account: mostly salt+md5 hashes, some $6$ and bare md5, a few social-only
    or blocked accounts, some rows without email or phone, phones in both spellings."""
    a = c.account(i)
    phone = "" if i % 33 == 0 else c.local_phone(a["phone"]) if i % 10 == 5 else a["phone"]
    email = "" if i % 50 == 7 else a["email"]
    social = ""
    if i % 50 == 3:  # social-only: no password at all
        social, pw = f"google:{100000000000 + i}", ""
    elif i % 10 == 1 and pool:
        pw = pool[i % len(pool)]
    elif i % 20 == 2:
        pw = hashlib.md5(f"pw-{i}".encode()).hexdigest()
    else:
        pw = c.bitrix_md5_hash(i)
    if i % 50 == 4:
        social = f"vkontakte:{i};google:{200000000000 + i}"
    return (a["login"], email, phone, a["name"], a["last_name"], a["lang"], pw, social,
            "1" if i % 100 == 9 else "0")


def write_csv(path: Path, rows: int) -> float:
    t0 = time.perf_counter()
    pool = sha512_pool()
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(csv_row(i, pool) for i in range(rows))
    seconds = time.perf_counter() - t0
    c.log(f"wrote {path.name}: {rows:,} rows, {path.stat().st_size / 2**20:.0f} MiB in {seconds:.1f} s"
          + ("" if pool else " (passlib missing: no $6$ hashes)"))
    return seconds


def fresh_store(tmp: Path, name: str) -> Path:
    remove_store(tmp / name)
    db = tmp / name
    c.init_store(db)
    return db


def remove_store(db: Path) -> None:
    import shutil

    for suffix in ("", "-wal", "-shm", ".key"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(f"{db}.outbox", ignore_errors=True)


def count_users(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        conn.close()


def import_case(tmp: Path, data: Path, results: list):
    def run(r):
        db = fresh_store(tmp, "import.db")
        out = c.run_process(c.b24(db, "user", "import", str(data), "--format", "csv", "--json"),
                            cwd=tmp, rss=True, tree=True)
        if out.returncode not in (0, 5):  # 5: some rows were bad, the good ones kept
            c.expect(out, "user import")
        try:
            summary = json.loads(out.stdout)
        except ValueError:
            summary = {"stdout": out.stdout.decode(errors="replace")[-500:]}
        bad = summary.pop("bad", None) if isinstance(summary, dict) else None
        results.append({"round": r, "returncode": out.returncode, "imported": count_users(db),
                        "summary": summary, "first_bad": (bad or [])[:5]})
        remove_store(db)
        return out
    return run


def floor_case(tmp: Path, data: Path, rows: int):
    def run(r):
        db = fresh_store(tmp, "floor.db")
        out = c.expect(c.run_process([str(c.PY), "-c", FLOOR, str(data), str(db)], cwd=tmp, rss=True, tree=True),
                       "csv + sqlite3 floor")
        if count_users(db) != rows:
            raise SystemExit(f"the floor inserted {count_users(db):,} rows, expected {rows:,}")
        remove_store(db)
        return out
    return run


def mem(run) -> dict:
    return {"peak_rss_largest_process_mb": round(run.max_rss_kb * 1024 / 1e6, 1),
            "peak_rss_tree_mb": round(run.tree_rss_kb * 1024 / 1e6, 1),
            "peak_pss_tree_mb": round(run.tree_pss_kb * 1024 / 1e6, 1)}


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0], runs=1, warmup=0)
    p.add_argument("--rows", type=int, default=None, help="rows of csv (default 1,000,000; quick 100,000)")
    args = p.parse_args()
    if args.quick:  # one import of 100k rows, no warm-up, is the sanity run
        args.runs = 1 if args.runs is None else args.runs
        args.warmup = 0 if args.warmup is None else args.warmup
    runs, warmup = c.runs_of(args)
    rows = args.rows or (100_000 if args.quick else FULL_ROWS)
    c.require_tool()
    help_run = c.run_process(c.b24(Path("unused.db"), "user", "import", "--help"))
    if help_run.returncode != 0:
        raise SystemExit("`b24recover user import` is not available in this tree yet: "
                         + help_run.stderr.decode(errors="replace").strip()[-300:])

    with c.workdir("import", args.keep) as tmp:
        data = tmp / "users.csv"
        gen_seconds = round(write_csv(data, rows), 2)
        details: list = []
        names = {"import": f"user import --format csv ({rows:,} rows)",
                 "floor": f"floor: csv + sqlite3 executemany ({rows:,} rows)"}
        cases = [(names["import"], import_case(tmp, data, details)), (names["floor"], floor_case(tmp, data, rows))]
        c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
        samples = c.interleave(cases, runs, warmup, log=c.log)

    results = {}
    for name, _ in cases:
        st = c.stats(samples[name])
        worst = max(samples[name], key=lambda run: run.tree_pss_kb or 0)
        results[name] = {**st, "median_s": round(st["median_ms"] / 1000, 2),
                         "rows_per_s": round(rows / (st["median_ms"] / 1000)), **mem(worst)}
    imp, floor = results[names["import"]], results[names["floor"]]
    measured = [d for d in details if d["round"] >= 0]
    imported = min(d["imported"] for d in measured)
    scale = rows / FULL_ROWS
    ratios = {"import / floor, wall": c.ratio(imp["median_ms"], floor["median_ms"]),
              "import / floor, cpu": c.ratio(imp["cpu_median_ms"], floor["cpu_median_ms"]),
              "import cpu / wall (parallelism)": c.ratio(imp["cpu_median_ms"], imp["median_ms"])}
    checks = [
        c.check(f"user import {rows:,} rows, wall", imp["median_s"], LIMIT_S * scale, "s",
                "90 s per 1,000,000 rows" + ("" if rows == FULL_ROWS else f", scaled to {rows:,}")),
        c.check("user import peak memory (PSS, all processes)", imp["peak_pss_tree_mb"], LIMIT_MB, "MB",
                f"RSS sum {imp['peak_rss_tree_mb']} MB, largest process {imp['peak_rss_largest_process_mb']} MB"),
        c.check("user import rows missing", rows - imported, 0, "rows", f"{imported:,} of {rows:,} in the store"),
    ]

    c.table(f"user import as a whole process; {runs} run(s) each, interleaved",
            ["case", "median s", "min s", "max s", "cpu s", "rows/s", "PSS MB", "RSS sum MB", "largest MB"],
            [[name, r["median_s"], r["min_ms"] / 1000, r["max_ms"] / 1000, r["cpu_median_ms"] / 1000,
              r["rows_per_s"], r["peak_pss_tree_mb"], r["peak_rss_tree_mb"], r["peak_rss_largest_process_mb"]]
             for name, r in results.items()])
    c.table("Ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    c.print_checks(checks)
    c.write_report("import", {
        "params": {"rows": rows, "runs": runs, "warmup": warmup, "quick": args.quick, "csv_seconds": gen_seconds},
        "measurements": results, "import_runs": details, "baseline_code": FLOOR, "ratios": ratios,
        "checks": checks, "pass": all(ch["pass"] for ch in checks),
    }, quick=args.quick)


if __name__ == "__main__":
    main()
