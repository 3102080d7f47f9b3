"""Issue 13 item 19: short writes (token issue, redeem, reset) while three `user import`s of
100,000 rows run at once. How long does a short operation wait, and does any fail `store_locked`?

Measured twice in the same run: "before" is the code of `main` (git archive; 5,000-row import
transactions back to back) and "after" this tree (transactions sized by time, ~0.25 s, with a
pause for waiting writers between them). Each short operation is a whole process; its wait is its
wall time minus the median of the same operation on the same store with no import running.

Target: the longest wait of a short operation <= ~1 s, no failures.

    .venv/bin/python bench/bench_import_contention.py            # 3 x 100,000 rows
    .venv/bin/python bench/bench_import_contention.py --quick    # 3 x 20,000 rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import common as c

WAIT_TARGET_S = 1.0
PASSWORD = "a long enough passphrase 1"
CONFIG = 'portal_url = "https://portal.example.com"\ndefault_country = "RU"\n[hashing]\nbcrypt_rounds = 4\n'


def csv_rows(first: int, n: int) -> str:
    lines = ["login,email,phone,name,last_name,lang,password_hash,social,blocked"]
    for i in range(first, first + n):
        a = c.account(i)
        lines.append(f"{a['login']},{a['email']},{a['phone']},{a['name']},{a['last_name']},{a['lang']},"
                     f"{c.bitrix_md5_hash(i)},,0")
    return "\n".join(lines) + "\n"


class Variant:
    def __init__(self, name: str, code: Path, work: Path):
        self.name, self.code, self.work = name, code, work
        self.db = work / "store.db"
        self.config = work / "b24recover.toml"
        self.env = c.clean_env(PYTHONPATH=str(code))

    def argv(self, *args: str) -> list[str]:
        return [str(c.PY), "-m", "b24recover", "--db", str(self.db), "--config", str(self.config), *args]

    def run(self, *args: str, stdin: str | None = None) -> tuple[float, int, str, str]:
        t0 = time.perf_counter()
        done = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True, env=self.env,
                              cwd=self.work)
        return time.perf_counter() - t0, done.returncode, done.stdout, done.stderr


def prepare(v: Variant, short_accounts: int, rows: int) -> list[Path]:
    v.work.mkdir(parents=True)
    v.config.write_text(CONFIG, encoding="utf-8")
    assert v.run("init")[1] == 0
    seed = v.work / "short.csv"
    seed.write_text(csv_rows(0, short_accounts), encoding="utf-8")
    _, code, _, err = v.run("user", "import", str(seed))
    assert code == 0, err
    files = []
    for k in range(3):
        path = v.work / f"import{k}.csv"
        path.write_text(csv_rows(1_000_000 * (k + 1), rows), encoding="utf-8")
        files.append(path)
    return files


def short_ops(v: Variant, index: int) -> list[dict]:
    """issue, redeem, reset on account `index`; one sample each."""
    login = c.account(index)["login"]
    samples = []
    seconds, code, out, err = v.run("token", "issue", login, "--via", "none", "--json")
    samples.append({"op": "token issue", "seconds": seconds, "exit": code, "error": _code(err)})
    if code == 0:
        secret = parse_qs(urlsplit(json.loads(out)["link"]).query)["USER_CHECKWORD"][0]
        seconds, code, _, err = v.run("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                                      stdin=f"{secret}\n{PASSWORD}\n")
        samples.append({"op": "redeem", "seconds": seconds, "exit": code, "error": _code(err)})
    seconds, code, _, err = v.run("reset", login, "--generate", "--no-notify", "--json")
    samples.append({"op": "reset", "seconds": seconds, "exit": code, "error": _code(err)})
    return samples


def _code(stderr: str) -> str | None:
    try:
        return json.loads(stderr.strip().splitlines()[-1])["error"]["code"]
    except (ValueError, IndexError, KeyError, TypeError):
        return stderr.strip()[-200:] or None


def measure(v: Variant, files: list[Path], baseline_rounds: int, log) -> dict:
    base = [s for i in range(baseline_rounds) for s in short_ops(v, i)]
    medians = {op: c.median(s["seconds"] for s in base if s["op"] == op) for op in ("token issue", "redeem", "reset")}
    log(f"{v.name}: baseline medians " + ", ".join(f"{k} {m * 1000:.0f} ms" for k, m in medians.items()))
    imports = [subprocess.Popen(v.argv("user", "import", str(f), "--json"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=v.env, cwd=v.work) for f in files]
    samples: list[dict] = []
    t0 = time.perf_counter()

    def loop():
        i = baseline_rounds
        while any(p.poll() is None for p in imports):
            samples.extend(short_ops(v, i))
            i += 1

    lock_waits: list[float] = []

    def lock_probe():
        """The wait for the write lock itself, apart from process start-up and CPU load: a
        connection that takes it (BEGIN IMMEDIATE, busy timeout 10 s) and lets it go, every 50 ms."""
        import sqlite3

        conn = sqlite3.connect(v.db, timeout=10, isolation_level=None)
        while any(p.poll() is None for p in imports):
            t = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                lock_waits.append(time.perf_counter() - t)
            except sqlite3.OperationalError:
                lock_waits.append(float("inf"))
            time.sleep(0.05)
        conn.close()

    worker = threading.Thread(target=loop)
    worker.start()
    prober = threading.Thread(target=lock_probe)
    prober.start()
    results = []
    for p in imports:
        out, err = p.communicate()
        results.append({"exit": p.returncode, "summary": json.loads(out) if out else None,
                        "error": _code(err.decode(errors="replace"))})
    import_seconds = time.perf_counter() - t0
    worker.join()
    prober.join()
    lock_waits.sort()
    for s in samples:
        s["wait"] = max(0.0, s["seconds"] - medians[s["op"]])
    waits = sorted(s["wait"] for s in samples)
    failed = [s for s in samples if s["exit"] != 0]
    added = sum((r["summary"] or {}).get("added", 0) for r in results)
    report = {
        "variant": v.name, "import_seconds": round(import_seconds, 2), "rows_added": added,
        "imports_failed": [r for r in results if r["exit"] != 0],
        "short_operations": len(samples), "failed": len(failed),
        "failures": [{k: s[k] for k in ("op", "exit", "error", "seconds")} for s in failed],
        "longest_wait_s": round(waits[-1], 3) if waits else None,
        "p90_wait_s": round(waits[int(0.9 * (len(waits) - 1))], 3) if waits else None,
        "median_wait_s": round(c.median(waits), 3) if waits else None,
        "baseline_ms": {k: round(m * 1000, 1) for k, m in medians.items()},
        "lock_probes": len(lock_waits),
        "lock_wait_max_s": round(lock_waits[-1], 3) if lock_waits else None,
        "lock_wait_p99_s": round(lock_waits[int(0.99 * (len(lock_waits) - 1))], 3) if lock_waits else None,
        "lock_wait_median_s": round(c.median(lock_waits), 3) if lock_waits else None,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    log(f"{v.name}: imports {import_seconds:.1f} s ({added:,} rows), {len(samples)} short operations, "
        f"{len(failed)} failed, longest wait {report['longest_wait_s']} s, p90 {report['p90_wait_s']} s; "
        f"write lock: longest {report['lock_wait_max_s']} s, p99 {report['lock_wait_p99_s']} s")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--before", default="main", help="the git revision measured as 'before'")
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 100_000)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="b24-contention-") as tmp:
        tmp = Path(tmp)
        before_code = tmp / "before-code"
        before_code.mkdir()
        archive = subprocess.run(["git", "-C", str(c.ROOT), "archive", args.before, "b24recover"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before_code)], input=archive, check=True)
        reports = []
        for v in (Variant("before", before_code, tmp / "before"), Variant("after", c.ROOT, tmp / "after")):
            files = prepare(v, 400, rows)
            reports.append(measure(v, files, 5, log))
    c.table(f"short operations during 3 concurrent imports of {rows:,} rows",
            ["variant", "import s", "short ops", "failed", "longest wait s", "p90 wait s", "median wait s",
             "lock wait max s", "lock wait p99 s", "load"],
            [[r["variant"], r["import_seconds"], r["short_operations"], r["failed"], r["longest_wait_s"],
              r["p90_wait_s"], r["median_wait_s"], r["lock_wait_max_s"], r["lock_wait_p99_s"], r["load_avg"][0]]
             for r in reports])
    after = reports[-1]
    result = {"machine": c.machine(), "rows_per_import": rows, "reports": reports,
              "targets": [c.check("longest wait for the write lock (after)", after["lock_wait_max_s"] or 0,
                                  WAIT_TARGET_S, "s"),
                          c.check("longest wait of a short operation (after)", after["longest_wait_s"] or 0,
                                  WAIT_TARGET_S, "s", "whole processes: includes CPU load"),
                          c.check("failed short operations (after)", after["failed"], 0, "")]}
    c.OUT.mkdir(parents=True, exist_ok=True)
    name = "import_contention-quick.json" if args.quick else "import_contention.json"
    (c.OUT / name).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
