"""Shared helpers for the bench_*.py scripts: whole-process timing with peak RSS, interleaved
runs and their medians, synthetic accounts, fast store building, tables and JSON reports.

Everything here is standard library, so a script can run before the package is importable;
only the in-process bcrypt baselines (bench_tokens.py) need the project's virtualenv.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
B24 = VENV_BIN / "b24recover"  # the console script, as operators run it
PY = VENV_BIN / "python"  # the same interpreter, for the baselines
PYCACHE = OUT / "pycache"

LANGS = ("en", "ru", "de", "it", "pt")
_FIRST = (("Anna", "Анна"), ("Ivan", "Иван"), ("Maria", "Мария"), ("Sergey", "Сергей"), ("Olga", "Ольга"),
          ("Dmitry", "Дмитрий"), ("Elena", "Елена"), ("Alexey", "Алексей"), ("Tatiana", "Татьяна"),
          ("Pavel", "Павел"), ("Natalia", "Наталья"), ("Mikhail", "Михаил"), ("Julia", "Юлия"),
          ("Klaus", "Klaus"), ("Giulia", "Giulia"), ("Joao", "João"))
_LAST = (("Ivanova", "Иванова"), ("Petrov", "Петров"), ("Smirnova", "Смирнова"), ("Kuznetsov", "Кузнецов"),
         ("Popova", "Попова"), ("Sokolov", "Соколов"), ("Lebedeva", "Лебедева"), ("Kozlov", "Козлов"),
         ("Novikova", "Новикова"), ("Morozov", "Морозов"), ("Volkova", "Волкова"), ("Fedorov", "Фёдоров"),
         ("Mueller", "Müller"), ("Rossi", "Rossi"), ("Silva", "Silva"), ("Orlova", "Орлова"))
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "example.ru")
START_LOAD = os.getloadavg()  # other work on the machine skews wall times: reported with them
PHONE_BASE = 79000000000  # +7 900 000 00 00: a valid Russian mobile range, unique per account


# ---- synthetic accounts -------------------------------------------------------------------

def account(i: int) -> dict:
    """Account number i: deterministic, unique login, email and phone, valid for the tool's checks."""
    first_lat, first = _FIRST[i % len(_FIRST)]
    last_lat, last = _LAST[(i // len(_FIRST)) % len(_LAST)]
    login = f"{first_lat}.{last_lat}.{i}".lower()
    return {
        "login": login,
        "email": f"{login}@{_DOMAINS[i % len(_DOMAINS)]}",
        "phone": f"+{PHONE_BASE + i}",
        "name": first if i % 2 else first_lat,
        "last_name": last if i % 2 else last_lat,
        "lang": LANGS[i % len(LANGS)],
    }


def local_phone(e164: str) -> str:
    """The way Russians usually type a mobile number: 8 (9xx) xxx-xx-xx."""
    d = e164[2:]
    return f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"


def bitrix_md5_hash(i: int) -> str:
    """A Bitrix 'md5-salted' hash (8-character salt + md5(salt + password)); the password is
    derived from i and thrown away, since benchmarks never sign in with it."""
    salt = format((i * 2654435761) & 0xFFFFFFFF, "08x")
    return salt + hashlib.md5((salt + f"pw-{i}-{salt}").encode()).hexdigest()


# ---- stores ---------------------------------------------------------------------------------

def clean_env(**extra: str) -> dict:
    """The caller's environment without B24RECOVER_* settings, so defaults (bcrypt cost 12,
    the store given by --db) apply whatever the shell exported.

    Byte-code caching is on, as on an installed system, but the cache lives in bench/out/pycache
    (PYTHONPYCACHEPREFIX): a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise make every run
    compile each edited module again, and nothing is written into the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def b24(db: Path, *args: str) -> list[str]:
    return [str(B24), "--db", str(db), *args]


def init_store(db: Path) -> None:
    run = run_process(b24(db, "init", "--json"), cwd=db.parent)
    if run.returncode != 0:
        raise SystemExit(f"b24recover init failed ({run.returncode}): {run.stderr.decode(errors='replace')}")


USER_SQL = ("INSERT INTO users (login, login_key, email, email_key, phone, name, last_name, lang,"
            " created_at, updated_at, password_hash, blocked, must_change_password)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)")


def _user_rows(n: int, now: int) -> Iterator[tuple]:
    for i in range(n):
        a = account(i)
        yield (a["login"], a["login"].casefold(), a["email"], a["email"].casefold(), a["phone"],
               a["name"], a["last_name"], a["lang"], now, now, bitrix_md5_hash(i))


def build_store(db: Path, n: int, *, log: Callable[[str], None] | None = None) -> float:
    """`b24recover init`, then n accounts by direct SQL in one transaction (the FTS triggers
    fill users_fts). Returns the seconds it took."""
    t0 = time.perf_counter()
    init_store(db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a bench fixture, rebuilt if the machine dies
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the three unique indexes stay in memory
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(USER_SQL, _user_rows(n, int(time.time())))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    seconds = time.perf_counter() - t0
    if log:
        log(f"built {db.name}: {n:,} accounts in {seconds:.1f} s, {db.stat().st_size / 2**20:.0f} MiB")
    return seconds


@contextmanager
def workdir(name: str, keep: bool = False) -> Iterator[Path]:
    """A temporary folder for stores and outboxes, removed afterwards unless keep."""
    path = Path(tempfile.mkdtemp(prefix=f"b24bench-{name}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# ---- running and timing ---------------------------------------------------------------------

TIME = Path("/usr/bin/time")


@dataclass
class Run:
    seconds: float  # wall time from spawn to exit
    cpu_seconds: float  # user + system
    returncode: int
    stdout: bytes
    stderr: bytes
    max_rss_kb: int | None = None  # peak resident set of the command, when asked for
    tree_rss_kb: int | None = None  # sampled peak of the summed RSS of the command and its children
    tree_pss_kb: int | None = None  # the same with PSS: shared pages counted once


def run_process(argv: list[str], *, stdin: bytes | None = None, cwd: Path | None = None,
                env: dict | None = None, rss: bool = False, tree: bool = False) -> Run:
    """Run argv as a whole process and measure it. Output goes to anonymous files, not pipes, so
    no reader thread competes with the child.

    Peak RSS (rss=True) comes from GNU time's %M: the kernel's high-water mark of a child
    includes the memory of whoever forked it (this process may hold hundreds of MB), so
    os.wait4/RUSAGE_CHILDREN would report our size, not the command's; time(1) is a small
    parent. The wrapper costs about a millisecond, so timed comparisons leave rss off.

    %M is the largest single process; a command with helper processes uses their sum, which
    tree=True samples from /proc every 50 ms (RSS and PSS of every descendant)."""
    if rss and not TIME.exists():
        raise SystemExit(f"{TIME} (GNU time) is needed to measure peak memory")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="b24bench-rss-") as rss_file:
        full = [str(TIME), "-q", "-f", "%M", "-o", rss_file.name, *argv] if rss else argv
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, cwd=cwd, env=env if env is not None else clean_env())
        sampler = TreeSampler(proc.pid, skip_root=rss) if tree else None
        if stdin is not None:
            try:
                proc.stdin.write(stdin)
            except BrokenPipeError:
                pass  # the child exited early; its exit code tells why
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if sampler:
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen the child is reaped
        out.seek(0)
        err.seek(0)
        peak = None
        if rss:
            lines = Path(rss_file.name).read_text().split()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else None
        return Run(seconds, usage.ru_utime + usage.ru_stime, proc.returncode, out.read(), err.read(), peak,
                   sampler.peak_rss if sampler else None, sampler.peak_pss if sampler else None)


class TreeSampler:
    """Polls the memory of a process and all its descendants in a thread until stopped."""

    def __init__(self, root: int, *, skip_root: bool = False, interval: float = 0.05):
        self.root, self.skip_root, self.interval = root, skip_root, interval
        self.peak_rss = self.peak_pss = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.is_set():
            rss = pss = 0
            for pid in self._tree():
                if pid == self.root and self.skip_root:
                    continue  # time(1) itself
                r, p = _memory_kb(pid)
                rss, pss = rss + r, pss + p
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._done.wait(self.interval)

    def _tree(self) -> list[int]:
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass  # it exited between two reads
        return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from smaps_rollup; zeros once the process is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def cprofile(argv: list[str], *, stdin: bytes | None = None, cwd: Path | None = None, top: int = 15) -> dict:
    """Run a Python console script under cProfile as a whole process; return the heaviest
    b24recover functions by cumulative time and the heaviest functions anywhere by own time.
    cProfile slows calls down, so read the shares, not the absolute numbers."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="b24bench-prof-") as d:
        out = Path(d) / "profile"
        expect(run_process([str(PY), "-m", "cProfile", "-o", str(out), *argv], stdin=stdin, cwd=cwd),
               f"cProfile of {Path(argv[0]).name} {' '.join(argv[1:3])}")
        stats = pstats.Stats(str(out)).stats
    rows = []
    for (file, line, fn), (_, calls, own, cum, _) in stats.items():
        where = fn if file == "~" else f"{_short(file)}:{line}({fn})"
        rows.append((where, calls, own * 1000, cum * 1000, "/b24recover/" in file))
    total = max(r[3] for r in rows)
    own_top = sorted(rows, key=lambda r: -r[2])[:top]
    ours = sorted((r for r in rows if r[4]), key=lambda r: -r[3])[:top]
    return {"total_ms": round(total, 1),
            "b24recover_cumulative": [{"function": r[0], "calls": r[1], "cum_ms": round(r[3], 1)} for r in ours],
            "own_time": [{"function": r[0], "calls": r[1], "own_ms": round(r[2], 1)} for r in own_top]}


def _short(file: str) -> str:
    """A path from its package on: b24recover/..., passlib/..., re/_parser.py."""
    for marker in ("/b24recover/", "/site-packages/"):
        if marker in file:
            return ("b24recover/" if marker == "/b24recover/" else "") + file.split(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.*)$", file)
    return m.group(1) if m else file


def print_cprofile(title: str, prof: dict) -> None:
    table(f"{title}: cProfile, {prof['total_ms']:.0f} ms in all (profiled, so slower than real)",
          ["b24recover function", "calls", "cum ms"],
          [[r["function"], r["calls"], r["cum_ms"]] for r in prof["b24recover_cumulative"]])
    table("Heaviest functions by own time", ["function", "calls", "own ms"],
          [[r["function"], r["calls"], r["own_ms"]] for r in prof["own_time"]])


def expect(run: Run, what: str, code: int = 0) -> Run:
    """Fail loudly when a timed command did not do its job: a fast failure is not a result."""
    if run.returncode != code:
        detail = (run.stderr or run.stdout).decode(errors="replace").strip()[-800:]
        raise SystemExit(f"{what}: exit {run.returncode} (expected {code}): {detail}")
    return run


Case = tuple[str, Callable[[int], Run]]


def interleave(cases: list[Case], runs: int, warmup: int, *, log: Callable[[str], None] | None = None
               ) -> dict[str, list[Run]]:
    """Run every case once per round (A B C A B C ...), rotating the order each round so no case
    always follows the same neighbour; machine noise then falls on all cases alike. Each case
    gets the round number (warm-up rounds are negative) and returns its Run."""
    samples: dict[str, list[Run]] = {name: [] for name, _ in cases}
    for r in range(-warmup, runs):
        shift = r % len(cases)
        for name, fn in cases[shift:] + cases[:shift]:
            run = fn(r)
            if r >= 0:
                samples[name].append(run)
        if log and r >= 0 and (r + 1) % 5 == 0:
            log(f"  round {r + 1}/{runs}")
    return samples


def in_process(fn: Callable[[], object]) -> Run:
    """Time a call in this process, as a Run so it sits in the same tables."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return Run(time.perf_counter() - t0, time.process_time() - c0, 0, b"", b"")


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def stats(runs: list[Run]) -> dict:
    """Median and spread of wall time in ms, with the median CPU time beside it."""
    ms = sorted(r.seconds * 1000 for r in runs)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median_ms": round(statistics.median(ms), 2), "q1_ms": round(q[0], 2), "q3_ms": round(q[2], 2),
            "min_ms": round(ms[0], 2), "max_ms": round(ms[-1], 2), "runs": len(ms),
            "cpu_median_ms": round(median(r.cpu_seconds * 1000 for r in runs), 2),
            "samples_ms": [round(r.seconds * 1000, 2) for r in runs]}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def check(name: str, value: float, limit: float, unit: str, detail: str = "") -> dict:
    return {"check": name, "value": round(value, 3), "limit": round(limit, 3), "unit": unit,
            "pass": value <= limit, "detail": detail}


# ---- reporting --------------------------------------------------------------------------------

def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(), "load_avg_start": [round(x, 2) for x in START_LOAD],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()]}


def table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def print_timings(title: str, results: dict) -> None:
    """The measurement table: one row per case, from `stats()` results."""
    table(title, ["case", "median ms", "q1", "q3", "min", "max", "cpu ms", "peak MiB"],
          [[name, r["median_ms"], r["q1_ms"], r["q3_ms"], r["min_ms"], r["max_ms"], r["cpu_median_ms"],
            r["peak_rss_mib"]] for name, r in results.items()])


def print_checks(checks: list[dict]) -> None:
    table("Targets", ["target", "measured", "limit", "unit", "result", "how"],
          [[c["check"], c["value"], c["limit"], c["unit"], c["pass"], c["detail"]] for c in checks])


def write_report(name: str, payload: dict, *, quick: bool = False) -> Path:
    """bench/out/NAME.json; a --quick run writes NAME-quick.json so it never replaces a full one."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}{'-quick' if quick else ''}.json"
    payload = {"bench": name, "at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def arg_parser(description: str, *, runs: int = 15, warmup: int = 2) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer accounts and runs: a fast sanity run")
    p.add_argument("--runs", type=int, default=None, help=f"measured runs per case (default {runs}, quick 5)")
    p.add_argument("--warmup", type=int, default=None, help=f"warm-up runs, not counted (default {warmup}, quick 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores and print where")
    p.set_defaults(_runs=runs, _warmup=warmup)
    return p


def runs_of(args) -> tuple[int, int]:
    runs = args.runs if args.runs is not None else (5 if args.quick else args._runs)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else args._warmup)
    if runs < 1 or warmup < 0:
        raise SystemExit("--runs must be at least 1 and --warmup at least 0")
    return runs, warmup


def require_tool() -> None:
    if not B24.exists():
        raise SystemExit(f"{B24} not found: run `make venv` first")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
