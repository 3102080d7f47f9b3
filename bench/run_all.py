"""Run every bench/bench_*.py in turn (whoever added it), then say which ran and where their
reports went. `--quick` is passed through to each script.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PYTHON = BENCH.parent / ".venv" / "bin" / "python"


def scripts(only: list[str]) -> list[Path]:
    found = sorted(BENCH.glob("bench_*.py"))
    if only:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
        found = [p for p in found if p.stem.removeprefix("bench_") in wanted]
    return found


def targets(since: float) -> str:
    """What the reports a script just wrote say about their targets ("pass": true/false)."""
    said = []
    for report in sorted((BENCH / "out").glob("*.json")):
        if report.stat().st_mtime < since:
            continue
        try:
            verdict = json.loads(report.read_text(encoding="utf-8")).get("pass")
        except (ValueError, AttributeError):
            continue
        if isinstance(verdict, bool):
            said.append(f"{report.name}: targets {'met' if verdict else 'MISSED'}")
    return "; ".join(said)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rows and runs in every script")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="only these scripts (e.g. lookup tokens)")
    args = p.parse_args()
    python = str(PYTHON) if PYTHON.exists() else sys.executable
    todo = scripts(args.only)
    if not todo:
        print("no bench_*.py scripts matched", file=sys.stderr)
        return 2
    outcome = []
    for script in todo:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.time()
        code = subprocess.call([python, str(script), *(["--quick"] if args.quick else [])], cwd=BENCH.parent)
        outcome.append((script.name, code, time.time() - started, targets(started)))
    print("\n=== summary ===")
    for name, code, seconds, met in outcome:
        print(f"{name:28} {'ran' if code == 0 else f'FAILED (exit {code})':18} {seconds:7.1f} s  {met}")
    print(f"reports: {BENCH / 'out'}/*.json")
    return 1 if any(o[1] for o in outcome) else 0


if __name__ == "__main__":
    sys.exit(main())
