"""Issue 10: `b24recover portal sync` of 100,000 portal users on MariaDB, as whole processes:
a full sync into an empty store (target <= 30 s) and an incremental sync with 100 changed rows
(target <= 1 s), each with its peak memory, next to a baseline measured in the same run: a
`python -c` that SELECTs the same columns of the same tables with PyMySQL into Python lists and
does nothing else (the floor of reading the portal).

The portal is a fresh database on the MariaDB server at 127.0.0.1:3306 (root, no password),
built with the tests' b_user schema (tests/portal_db.py) and dropped afterwards: 100,000
users with Bitrix salt+md5 hashes, a third with a b_user_phone_auth number, 5% social-only with
a b_socialservices_user row, everyone in group 2 and a tenth in group 1 (both with a serialized
SECURITY_POLICY), TIMESTAMP_X spread over the past year.

    .venv/bin/python bench/bench_portal_sync.py            # 100,000 users, 3 full and 7 incremental runs
    .venv/bin/python bench/bench_portal_sync.py --quick    # 10,000 users
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import common as c

sys.path.insert(0, str(c.ROOT / "tests"))
from portal_db import PortalDB  # noqa: E402  (the tests' schema, one source)

FULL_USERS = 100_000
CHANGED = 100
LIMIT_FULL_S = 30.0
LIMIT_INCR_S = 1.0
POLICY = 'a:2:{s:17:"CHECKWORD_TIMEOUT";s:4:"2880";s:15:"PASSWORD_LENGTH";s:1:"6";}'
STRICT = 'a:3:{s:17:"CHECKWORD_TIMEOUT";s:2:"60";s:15:"PASSWORD_LENGTH";s:2:"12";s:15:"PASSWORD_DIGITS";s:1:"Y";}'

# The floor: the same columns of the same tables into Python, nothing else.
BASELINE = """\
import sys, pymysql
conn = pymysql.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3], password="",
                       database=sys.argv[4], charset="utf8mb4")
since = sys.argv[5] if len(sys.argv) > 5 else None
cur = conn.cursor()
cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
where = " WHERE TIMESTAMP_X >= %s" if since else ""
cur.execute("SELECT ID, LOGIN, EMAIL, ACTIVE, BLOCKED, PASSWORD, EXTERNAL_AUTH_ID, LANGUAGE_ID, NAME,"
            " LAST_NAME, PERSONAL_PHONE, PASSWORD_EXPIRED, TIMESTAMP_X FROM b_user" + where,
            (since,) if since else ())
users = cur.fetchall()
ids = [r[0] for r in users]
tail = " WHERE USER_ID IN (" + ",".join(map(str, ids or [0])) + ")" if since else ""
cur.execute("SELECT USER_ID, PHONE_NUMBER, CONFIRMED FROM b_user_phone_auth" + tail)
phones = cur.fetchall()
cur.execute("SELECT USER_ID, EXTERNAL_AUTH_ID, XML_ID FROM b_socialservices_user" + tail)
socials = cur.fetchall()
cur.execute("SELECT USER_ID, GROUP_ID FROM b_user_group" + tail)
groups = cur.fetchall()
cur.execute("SELECT ID, SECURITY_POLICY FROM b_group")
policies = cur.fetchall()
print(len(users), len(phones), len(socials), len(groups))
"""


def populate(db: PortalDB, n: int) -> None:
    db.execute("INSERT INTO b_group (ID, NAME, SECURITY_POLICY) VALUES (1, 'Administrators', %s), (2, 'Everyone', %s)",
               (STRICT, POLICY))
    db.execute("INSERT INTO b_option (MODULE_ID, NAME, VALUE) VALUES ('main', 'new_user_email_uniq_check', 'N')")
    chunk = 2000
    for start in range(0, n, chunk):
        users, phones, socials, groups = [], [], [], []
        for i in range(start, min(n, start + chunk)):
            a = c.account(i)
            uid = i + 1
            social = i % 20 == 7
            ts = f"2025-{1 + i * 12 // n:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"
            users.append((uid, ts, a["login"], "random" * 6 if social else c.bitrix_md5_hash(i), a["email"],
                          a["name"], a["last_name"], a["lang"], "socservices" if social else None,
                          "+7 495 000-00-00" if i % 50 == 0 else None))
            if i % 3 == 0:
                phones.append((uid, a["phone"], "Y"))
            if social:
                socials.append((a["login"], "VKontakte", uid, f"vk{i}"))
            groups.append((uid, 2))
            if i % 10 == 0:
                groups.append((uid, 1))
        db.execute("INSERT INTO b_user (ID, TIMESTAMP_X, LOGIN, PASSWORD, EMAIL, NAME, LAST_NAME, LANGUAGE_ID,"
                   " EXTERNAL_AUTH_ID, PERSONAL_PHONE) VALUES " + ", ".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * len(users)),
                   tuple(x for row in users for x in row))
        if phones:
            db.execute("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES "
                       + ", ".join(["(%s,%s,%s)"] * len(phones)), tuple(x for row in phones for x in row))
        if socials:
            db.execute("INSERT INTO b_socialservices_user (LOGIN, EXTERNAL_AUTH_ID, USER_ID, XML_ID) VALUES "
                       + ", ".join(["(%s,%s,%s,%s)"] * len(socials)), tuple(x for row in socials for x in row))
        db.execute("INSERT INTO b_user_group (USER_ID, GROUP_ID) VALUES " + ", ".join(["(%s,%s)"] * len(groups)),
                   tuple(x for row in groups for x in row))


def main() -> None:
    p = c.arg_parser("portal sync of a 100,000-user MariaDB portal: full and incremental", runs=3, warmup=0)
    p.add_argument("--users", type=int, default=None)
    args = p.parse_args()
    c.require_tool()
    runs, _ = c.runs_of(args)
    incr_runs = max(runs, 7) if not args.quick else 5
    n = args.users or (10_000 if args.quick else FULL_USERS)
    db = PortalDB.create("mariadb")
    try:
        with c.workdir("portal", args.keep) as work:
            t0 = time.perf_counter()
            populate(db, n)
            c.log(f"portal {db.name}: {n:,} users in {time.perf_counter() - t0:.1f} s")
            config = work / "b24recover.toml"
            config.write_text(f'[portal]\ndsn = "{db.dsn}"\n', encoding="utf-8")
            empty = work / "empty.db"
            c.init_store(empty)

            def fresh(name: str, source: Path) -> Path:
                target = work / name
                for suffix in ("", "-wal", "-shm", ".key"):
                    Path(str(target) + suffix).unlink(missing_ok=True)
                shutil.copy(source, target)
                shutil.copy(str(source) + ".key", str(target) + ".key")
                return target

            def sync(store: Path, *extra: str, rss: bool = False) -> c.Run:
                argv = [str(c.B24), "--db", str(store), "--config", str(config), "portal", "sync", "--json", *extra]
                return c.run_process(argv, cwd=work, rss=rss)

            base_argv = [str(c.PY), "-c", BASELINE, db.host, str(db.port), db.user, db.name]
            full_runs, base_runs = [], []
            for r in range(runs):
                store = fresh("full.db", empty)
                run = c.expect(sync(store), "portal sync (full)")
                out = json.loads(run.stdout)
                if out["added"] + len(out["refused"]) != n or out["refused"]:
                    raise SystemExit(f"full sync did not take every user: {out}")
                full_runs.append(run)
                base_runs.append(c.expect(c.run_process(base_argv, cwd=work), "baseline SELECT"))
                c.log(f"  full {r + 1}/{runs}: {run.seconds:.1f} s (baseline {base_runs[-1].seconds:.2f} s)")
            synced = work / "synced.db"
            shutil.move(str(store), synced)
            shutil.move(str(store) + ".key", str(synced) + ".key")
            for suffix in ("-wal", "-shm"):
                Path(str(store) + suffix).unlink(missing_ok=True)
            full_peak = c.expect(sync(fresh("full.db", empty), rss=True), "portal sync (full, rss)").max_rss_kb
            base_peak = c.run_process(base_argv, cwd=work, rss=True).max_rss_kb

            # 100 rows changed in the portal after the full sync, as its user form would.
            time.sleep(1.1)
            since = db.query("SELECT NOW()")[0][0].strftime("%Y-%m-%d %H:%M:%S")
            step = n // CHANGED
            db.execute(f"UPDATE b_user SET NAME = CONCAT(NAME, ' 2'), TIMESTAMP_X = NOW() WHERE MOD(ID, {step}) = 1")
            incr_runs_s, incr_base = [], []
            for r in range(incr_runs):
                store = fresh("incr.db", synced)
                run = c.expect(sync(store), "portal sync (incremental)")
                out = json.loads(run.stdout)
                if out["updated"] != CHANGED or out["added"]:
                    raise SystemExit(f"incremental sync did not update the {CHANGED} rows: {out}")
                incr_runs_s.append(run)
                incr_base.append(c.expect(c.run_process([*base_argv, since], cwd=work), "baseline SELECT (changed)"))
            incr_peak = c.expect(sync(fresh("incr.db", synced), rss=True), "portal sync (incremental, rss)").max_rss_kb
            incr_base_peak = c.run_process([*base_argv, since], cwd=work, rss=True).max_rss_kb

        results = {
            f"portal sync, full, {n:,} users": c.stats(full_runs) | {"peak_rss_mib": round(full_peak / 1024, 1)},
            f"baseline SELECT, {n:,} users": c.stats(base_runs) | {"peak_rss_mib": round(base_peak / 1024, 1)},
            f"portal sync, incremental, {CHANGED} changed": c.stats(incr_runs_s) | {"peak_rss_mib": round(incr_peak / 1024, 1)},
            f"baseline SELECT, {CHANGED} changed": c.stats(incr_base) | {"peak_rss_mib": round(incr_base_peak / 1024, 1)},
        }
        keys = list(results)
        full_ms, base_ms = results[keys[0]]["median_ms"], results[keys[1]]["median_ms"]
        incr_ms, incr_base_ms = results[keys[2]]["median_ms"], results[keys[3]]["median_ms"]
        scale = FULL_USERS / n
        checks = [
            c.check("full sync of 100,000 users", full_ms / 1000 * scale, LIMIT_FULL_S, "s",
                    "median" + (f", scaled x{scale:g} from {n:,}" if scale != 1 else "")),
            c.check(f"incremental sync, {CHANGED} changed", incr_ms / 1000, LIMIT_INCR_S, "s", "median"),
        ]
        c.print_timings(f"portal sync on MariaDB ({n:,} users)", results)
        c.table("Ratios to the same-run baseline", ["case", "ratio"],
                [["full sync / SELECT of all", c.ratio(full_ms, base_ms)],
                 ["incremental / SELECT of the changed", c.ratio(incr_ms, incr_base_ms)]])
        c.print_checks(checks)
        c.write_report("portal_sync", {"users": n, "changed": CHANGED, "results": results, "checks": checks,
                                       "ratios": {"full": c.ratio(full_ms, base_ms),
                                                  "incremental": c.ratio(incr_ms, incr_base_ms)}},
                       quick=args.quick)
    finally:
        db.drop()


if __name__ == "__main__":
    main()
