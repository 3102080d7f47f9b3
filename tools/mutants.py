"""`make mutants`: mutation testing (mutmut 3) of the modules that hold the rules of SPEC §5.

    python tools/mutants.py run [MODULE ...]   # fresh run (all of MODULES, or the ones named)
    python tools/mutants.py rerun [MODULE ...]   # only the last run's survivors, with the tests as they are now
    python tools/mutants.py report [MODULE ...]  # the table and survivors of the last run

Each module runs in a work folder of its own, mutants/<name>/ (mutmut keeps one result store per
folder, and each module has its own test selection): the folder links b24recover/, tests/,
docs/, examples/ and pyproject.toml, and mutmut copies them into mutants/<name>/mutants/.

Two things this script does that plain `mutmut run` would not:

- Every mutant of a module runs the test files MODULES maps it to, fastest first, stopping at
  the first failure. mutmut itself picks the tests of a mutant by recording, in-process, which
  tests called the function — so a test that reaches the code only through a subprocess
  (`python -m b24recover`, the race and kill -9 tests) is never picked and could kill nothing.
- Subprocesses run the mutated code: pytest runs with cwd = the copy, the tests start their
  children with cwd=ROOT (the copy, since conftest.py is copied too) and `python -m` puts cwd
  first on sys.path, ahead of the editable install's path entry; the children inherit
  MUTANT_UNDER_TEST from os.environ (every test copies os.environ), which the mutated
  functions' trampolines read. `check_subprocess_sees_mutants` below proves it on each run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"

# The modules under mutation testing and the test files that exercise each of them.
# To add a module (the portal write-back, the PostgreSQL store, ...), add one line here.
MODULES: dict[str, list[str]] = {
    "b24recover/store/purge.py": [
        "tests/test_audit.py", "tests/test_purge_concurrency.py", "tests/test_purge_rules.py",
    ],
    "b24recover/services/secrets.py": [
        "tests/test_tokens.py", "tests/test_token_state_machine.py", "tests/test_secret_forms.py",
    ],
    "b24recover/services/passwords.py": [
        "tests/test_hashing.py", "tests/test_passwd.py", "tests/test_password_schemes.py",
    ],
    "b24recover/store/tokens.py": [
        "tests/test_tokens.py", "tests/test_token_state_machine.py", "tests/test_store_queries.py",
        "tests/test_redeem_race.py", "tests/test_races.py", "tests/test_token_store.py",
    ],
    "b24recover/services/tokens.py": [
        "tests/test_tokens.py", "tests/test_token_state_machine.py", "tests/test_redeem_race.py",
        "tests/test_races.py", "tests/test_enumeration.py", "tests/test_guessing.py",
    ],
    "b24recover/services/recovery.py": [
        "tests/test_tokens.py", "tests/test_token_state_machine.py", "tests/test_redeem_race.py",
        "tests/test_enumeration.py", "tests/test_guessing.py",
    ],
    "b24recover/store/outbox.py": [
        "tests/test_delivery.py", "tests/test_smtp_flow.py",
    ],
}

# mutmut's verdicts that count as killed: a test failed, or the mutant hung or crashed the run
KILLED = ("killed", "timeout", "segfault", "caught by type check")
LINKED = ("b24recover", "tests", "docs", "examples", "pyproject.toml")


def name_of(module: str) -> str:
    """b24recover/store/purge.py -> store.purge (the work folder's name)."""
    return module.removeprefix("b24recover/").removesuffix(".py").replace("/", ".")


def resolve(names: list[str]) -> list[str]:
    if not names:
        return list(MODULES)
    by_name = {name_of(m): m for m in MODULES}
    unknown = [n for n in names if n not in by_name and n not in MODULES]
    if unknown:
        sys.exit(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name.get(n, n) for n in names]


# ---- run ----------------------------------------------------------------------------------------

def prepare(module: str) -> Path:
    folder = WORK / name_of(module)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for entry in LINKED:
        (folder / entry).symlink_to(ROOT / entry)
    return folder


def run(modules: list[str], children: int, again: bool = False) -> int:
    missing = [t for m in modules for t in MODULES[m] if not (ROOT / t).exists()]
    if missing:
        sys.exit(f"test files in MODULES that do not exist: {', '.join(missing)}")
    times_file = WORK / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    for module in modules:
        only = [k for k, status in results(module).items() if status not in KILLED] if again else []
        if again and not only:
            continue
        folder = WORK / name_of(module) if again else prepare(module)
        log = folder / ("mutmut-rerun.log" if again else "mutmut.log")
        print(f"{name_of(module)}: mutating, {len(MODULES[module])} test files, log in {log.relative_to(ROOT)}",
              flush=True)
        started = time.monotonic()
        with log.open("wb") as out:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_one", module, str(children), *only],
                                  cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        took = time.monotonic() - started
        times[name_of(module)] = round(took + (times.get(name_of(module), 0) if again else 0), 1)
        if done.returncode != 0:
            print(log.read_text(errors="replace")[-3000:])
            sys.exit(f"{name_of(module)}: mutmut failed (exit {done.returncode}); see {log}")
        check_subprocess_sees_mutants(module, folder / "mutants")
        times_file.write_text(json.dumps(times))
    return report(modules)


def check_subprocess_sees_mutants(module: str, copy: Path) -> None:
    """A child started the way the tests start theirs (cwd = the copy) imports the mutated copy."""
    dotted = module.removesuffix(".py").replace("/", ".")
    code = f"import {dotted} as m; print(m.__file__); print(hasattr(m, '_mutmut_mutated'))"
    shown = subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True, text=True)
    lines = shown.stdout.split()
    if shown.returncode != 0 or lines != [str(copy / module), "True"]:
        sys.exit(f"a child process in {copy} does not import the mutated {module}: {shown.stdout}{shown.stderr}")


def one(module: str, children: int, only: list[str]) -> None:
    """Inside the work folder: mutate one module, its mapped tests for every mutant. With `only`,
    run just those mutants again (the other verdicts stand; new test files get their stats)."""
    import mutmut.__main__ as mm
    from mutmut.configuration import config
    from mutmut.state import state
    from mutmut.utils.format_utils import mangled_name_from_mutant_name

    cfg = config()
    cfg.only_mutate = [module]
    cfg.pytest_add_cli_args_test_selection = list(MODULES[module])
    cfg.use_git_change_detection = False

    collect = mm.collect_source_file_mutation_data

    def every_mapped_test(*args, **kwargs):
        mutants, by_path = collect(*args, **kwargs)
        mapped = set(state().duration_by_test)  # every test the stats run (the mapped files) ran
        for _, mutant_name, _ in mutants:
            state().tests_by_mangled_function_name[mangled_name_from_mutant_name(mutant_name)] |= mapped
        return mutants, by_path

    mm.collect_source_file_mutation_data = every_mapped_test
    if only:  # a changed test selection would reset every verdict: keep them, rerun the named
        mm._apply_config_change_invalidation = lambda *args, **kwargs: False
    mm._run(tuple(only), children)


# ---- report -------------------------------------------------------------------------------------

def results(module: str) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = WORK / name_of(module) / "mutants" / (module + ".meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {key: status_by_exit_code[code] for key, code in codes.items()}


def diff_of(module: str, mutant: str) -> list[str]:
    """The changed lines of one mutant, from `mutmut show` in the module's folder."""
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=WORK / name_of(module),
                           capture_output=True, text=True)
    return [line for line in shown.stdout.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def documented() -> str:
    path = ROOT / "docs" / "testing.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def report(modules: list[str]) -> int:
    times_file = WORK / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    explained = documented()
    rows, survivors = [], []
    for module in modules:
        found = results(module)
        if not found:
            rows.append((name_of(module), "-", "-", "-", "-", "not run"))
            continue
        unchecked = sum(1 for s in found.values() if s == "not checked")  # an interrupted run
        checked = len(found) - unchecked
        killed = sum(1 for s in found.values() if s in KILLED)
        survived = sorted(k for k, s in found.items() if s not in KILLED and s != "not checked")
        score = 100.0 * killed / checked if checked else 0.0
        took = times.get(name_of(module))
        rows.append((name_of(module), str(len(found)) + (f" ({unchecked} not run)" if unchecked else ""),
                     str(killed), str(len(survived)), f"{score:.1f}%", f"{took:.0f} s" if took is not None else "-"))
        survivors += [(module, key, found[key]) for key in survived]
    widths = [max(len(r[i]) for r in rows + [("module", "mutants", "killed", "survived", "score", "time")])
              for i in range(6)]
    head = ("module", "mutants", "killed", "survived", "score", "time")
    for row in [head] + rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if times:
        print(f"total time: {sum(times.get(name_of(m), 0) for m in modules):.0f} s")
    undocumented = 0
    if survivors:
        print("\nsurviving mutants (status; [documented] = listed as equivalent in docs/testing.md):")
    for module, key, status in survivors:
        short = key.removeprefix(module.removesuffix(".py").replace("/", ".") + ".")
        mark = "documented" if short in explained else "UNEXPLAINED"
        undocumented += mark == "UNEXPLAINED"
        print(f"  {short}  ({status}) [{mark}]")
        for line in diff_of(module, key):
            print(f"      {line.strip()[:110]}")
    print(f"\n{undocumented} surviving mutant(s) not yet explained in docs/testing.md")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["_one"]:
        one(argv[1], int(argv[2]), argv[3:])
        return 0
    if not argv or argv[0] not in ("run", "rerun", "report"):
        print(__doc__)
        return 2
    children = int(os.environ.get("MUTANTS_CHILDREN", os.cpu_count() or 2))
    modules = resolve(argv[1:])
    if argv[0] == "report":
        return report(modules)
    return run(modules, children, again=argv[0] == "rerun")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
