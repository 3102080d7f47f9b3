"""Issue 2: `b24recover lookup <email|phone> --json` as whole processes on a 1,000,000-account
store, against a `python -c` running the same indexed query with sqlite3 alone, and against the
same lookups on a 1,000-account store, all interleaved in one run.

Targets: median <= 150 ms on the 1M store; <= 5x the sqlite3 baseline; 1M within 1.2x of 1k.

    .venv/bin/python bench/bench_lookup.py            # 1M + 1k stores, 15 runs
    .venv/bin/python bench/bench_lookup.py --quick    # 100k + 1k stores, 5 runs
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import defaultdict

import common as c

LIMIT_MS = 150.0
LIMIT_VS_SQLITE = 5.0
LIMIT_VS_SMALL = 1.2

# The indexed query lookup runs, with nothing but sqlite3: the floor a Python CLI can reach.
BASELINE = ("import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1])\n"
            "print(conn.execute('SELECT * FROM users WHERE {column} = ?', (sys.argv[2],)).fetchall())\n")


def lookup_case(db, n, spell, pick):
    """`b24recover lookup X --json` for account pick(r); checks that it found that account."""
    def run(r, rss=False):
        a = c.account(pick(r))
        out = c.expect(c.run_process(c.b24(db, "lookup", spell(a), "--json"), cwd=db.parent, rss=rss),
                       f"lookup {spell(a)!r} on {n:,}")
        logins = [m["login"] for m in json.loads(out.stdout)["matches"]]
        if logins != [a["login"]]:
            raise SystemExit(f"lookup {spell(a)!r} on {n:,} found {logins}, expected {a['login']}")
        return out
    return run


def sqlite_case(db, n, column, field, pick):
    code = BASELINE.format(column=column)

    def run(r, rss=False):
        a = c.account(pick(r))
        out = c.expect(c.run_process([str(c.PY), "-c", code, str(db), a[field].casefold()], cwd=db.parent,
                                     rss=rss),
                       f"sqlite3 baseline on {n:,}")
        if a["login"].encode() not in out.stdout:
            raise SystemExit(f"sqlite3 baseline on {n:,} did not find {a['login']}")
        return out
    return run


# Where a lookup's time goes: each rung imports one more layer, as its own process.
LADDER = (
    ("python -c pass (interpreter + site)", "pass"),
    ("+ sqlite3, json (all the baseline needs)", "import sqlite3, json"),
    ("+ typer (the CLI framework)", "import sqlite3, json, typer"),
    ("+ b24recover.cli.app", "import sqlite3, json, typer, b24recover.cli.app"),
    ("+ b24recover.services.lookup", "import sqlite3, json, typer, b24recover.cli.app, b24recover.services.lookup"),
)
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def profile(db, email: str, runs: int, warmup: int) -> dict:
    """The import ladder (interleaved, whole processes) and `python -X importtime` of the real
    lookup, summarised as median self time per module and per top-level package."""
    c.log("profiling: import ladder and -X importtime")

    def rung(code):
        return lambda r: c.expect(c.run_process([str(c.PY), "-c", code], cwd=db.parent), f"python -c {code!r}")

    full = "lookup email (whole command)"
    cases = [(name, rung(code)) for name, code in LADDER]
    cases.append((full, lambda r: c.expect(c.run_process(c.b24(db, "lookup", email, "--json"), cwd=db.parent),
                                           "lookup")))
    samples = c.interleave(cases, runs, warmup)
    ladder, previous = [], None
    for name, _ in cases:
        wall, cpu = c.median(x.seconds for x in samples[name]) * 1000, c.median(x.cpu_seconds for x in samples[name]) * 1000
        ladder.append({"step": name, "wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1),
                       "added_cpu_ms": None if previous is None else round(cpu - previous, 1)})
        previous = cpu

    self_us, cum_us = defaultdict(list), defaultdict(list)
    totals = []
    for _ in range(max(runs, 5)):
        out = c.expect(c.run_process([str(c.PY), "-X", "importtime", str(c.B24), "--db", str(db), "lookup", email,
                                      "--json"], cwd=db.parent), "lookup -X importtime")
        total = 0
        for m in IMPORT_LINE.finditer(out.stderr.decode(errors="replace")):
            self_us[m.group(4)].append(int(m.group(1)))
            cum_us[m.group(4)].append(int(m.group(2)))
            total += int(m.group(1))
        totals.append(total)
    n = len(totals)
    med = {mod: statistics.median(v + [0] * (n - len(v))) / 1000 for mod, v in self_us.items()}
    packages = defaultdict(float)
    for mod, ms in med.items():
        packages[mod.split(".")[0]] += ms
    top_cum = {mod: statistics.median(v) / 1000 for mod, v in cum_us.items()
               if mod.split(".")[0] in ("typer", "b24recover") and mod.count(".") <= 2}
    return {"ladder": ladder,
            "imports_total_ms": round(statistics.median(totals) / 1000, 1),
            "import_packages_ms": {k: round(v, 1) for k, v in sorted(packages.items(), key=lambda kv: -kv[1])[:15]},
            "import_modules_self_ms": {k: round(v, 1) for k, v in sorted(med.items(), key=lambda kv: -kv[1])[:20]},
            "import_cumulative_ms": {k: round(v, 1) for k, v in sorted(top_cum.items(), key=lambda kv: -kv[1])[:15]}}


def print_profile(prof: dict) -> None:
    c.table("Where the time goes: one more layer imported per step (whole processes, medians)",
            ["step", "wall ms", "cpu ms", "+cpu ms"],
            [[x["step"], x["wall_ms"], x["cpu_ms"], x["added_cpu_ms"]] for x in prof["ladder"]])
    c.table(f"-X importtime of the lookup: {prof['imports_total_ms']} ms of imports; self time per top-level package",
            ["package", "ms"], list(prof["import_packages_ms"].items()))
    c.table("Slowest modules (self time)", ["module", "ms"], list(prof["import_modules_self_ms"].items()))
    c.table("typer and b24recover modules (cumulative, with what they import)", ["module", "ms"],
            list(prof["import_cumulative_ms"].items()))


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=None, help="accounts in the large store (default 1,000,000; quick 100,000)")
    p.add_argument("--small", type=int, default=1000, help="accounts in the small store (default 1,000)")
    p.add_argument("--profile", action="store_true", help="profile start-up even when the targets are met")
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    large = args.accounts or (100_000 if args.quick else 1_000_000)
    small = args.small
    c.require_tool()

    with c.workdir("lookup", args.keep) as tmp:
        stores = {}
        build = {}
        for n in (large, small):
            stores[n] = tmp / f"accounts-{n}.db"
            build[n] = round(c.build_store(stores[n], n, log=c.log), 2)

        rng = random.Random(2024)
        targets = {n: {r: rng.randrange(n) for r in range(-warmup, runs)} for n in (large, small)}
        L, S = f"{large:,}", f"{small:,}"
        email, phone = (lambda a: a["email"]), (lambda a: a["phone"])
        names = {}  # (kind, store size, role) -> case name
        cases = []
        for kind, spell, column, field in (("email", email, "email_key", "email"), ("phone", phone, "phone", "phone")):
            for n, label in ((large, L), (small, S)):
                pick = targets[n].__getitem__
                names[kind, n, "lookup"] = f"lookup {kind} @ {label}"
                names[kind, n, "sqlite"] = f"sqlite3 {kind} @ {label}"
                cases.append((names[kind, n, "lookup"], lookup_case(stores[n], n, spell, pick)))
                cases.append((names[kind, n, "sqlite"], sqlite_case(stores[n], n, column, field, pick)))
        # How people type Russian mobiles: needs the phone parser; reported, not a target.
        local = f"lookup phone '8 (9xx) xxx-xx-xx' @ {L}"
        cases.append((local, lookup_case(stores[large], large, lambda a: c.local_phone(a["phone"]),
                                         targets[large].__getitem__)))

        c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
        samples = c.interleave(cases, runs, warmup, log=c.log)
        results = {name: c.stats(samples[name]) for name, _ in cases}
        for name, fn in cases:  # one more run each, wrapped by time(1), for peak memory only
            results[name]["peak_rss_mib"] = round(fn(0, rss=True).max_rss_kb / 1024, 1)
        slow = max(results[names[k, large, "lookup"]]["median_ms"] for k in ("email", "phone")) > LIMIT_MS
        prof = profile(stores[large], c.account(targets[large][0])["email"], runs, warmup) \
            if slow or args.profile else None

    med = {name: r["median_ms"] for name, r in results.items()}
    cpu = {name: r["cpu_median_ms"] for name, r in results.items()}
    ratios, checks = {}, []
    for kind in ("email", "phone"):
        big, little = names[kind, large, "lookup"], names[kind, small, "lookup"]
        base = names[kind, large, "sqlite"]
        ratios[f"{kind}: lookup / sqlite3 @ {L}"] = c.ratio(med[big], med[base])
        ratios[f"{kind}: lookup / sqlite3 @ {S}"] = c.ratio(med[little], med[names[kind, small, "sqlite"]])
        ratios[f"{kind}: lookup @ {L} / @ {S}"] = c.ratio(med[big], med[little])
        ratios[f"{kind}: sqlite3 @ {L} / @ {S}"] = c.ratio(med[base], med[names[kind, small, "sqlite"]])
        ratios[f"{kind}: lookup - sqlite3 @ {L} (ms)"] = round(med[big] - med[base], 1)
        # CPU time is what a loaded machine cannot inflate: the same ratios, on it.
        ratios[f"{kind}: lookup / sqlite3 @ {L}, cpu"] = c.ratio(cpu[big], cpu[base])
        ratios[f"{kind}: lookup @ {L} / @ {S}, cpu"] = c.ratio(cpu[big], cpu[little])
        checks.append(c.check(f"lookup {kind} @ {L} median", med[big], LIMIT_MS, "ms"))
        checks.append(c.check(f"lookup {kind} / sqlite3 @ {L}", ratios[f"{kind}: lookup / sqlite3 @ {L}"],
                              LIMIT_VS_SQLITE, "x", f"{med[big]:.1f} / {med[base]:.1f} ms"))
        checks.append(c.check(f"lookup {kind} @ {L} / @ {S}", ratios[f"{kind}: lookup @ {L} / @ {S}"],
                              LIMIT_VS_SMALL, "x", f"{med[big]:.1f} / {med[little]:.1f} ms"))

    c.print_timings(f"lookup --json as whole processes; {runs} interleaved runs (+{warmup} warm-up) each", results)
    c.table("Ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    c.print_checks(checks)
    if prof:
        print_profile(prof)
    c.write_report("lookup", {
        "params": {"accounts": large, "small": small, "runs": runs, "warmup": warmup, "quick": args.quick,
                   "build_seconds": {str(n): s for n, s in build.items()}},
        "measurements": results, "baseline_code": BASELINE, "ratios": ratios, "checks": checks, "profile": prof,
        "pass": all(ch["pass"] for ch in checks),
    }, quick=args.quick)


if __name__ == "__main__":
    main()
