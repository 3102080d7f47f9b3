"""Start-up of `lookup` (the fast path) and of a typer-parsed command, this checkout against
the code of a git revision (default 5a5ea33: before completion support and issue 9's changes),
interleaved in the same run. Target: `lookup` within 5 % of the revision's median.

    .venv/bin/python bench/bench_startup.py                # 40 rounds
    .venv/bin/python bench/bench_startup.py --old 5a5ea33 --runs 60
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402


def old_tree(rev: str, where: Path) -> Path:
    dest = where / f"old-{rev}"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(c.ROOT), "archive", rev, "b24recover"], capture_output=True, check=True)
    (dest / "src.tar").write_bytes(archive.stdout)
    with tarfile.open(dest / "src.tar") as t:
        t.extractall(dest)
    subprocess.run([str(c.PY), "-m", "compileall", "-q", str(dest / "b24recover")], check=True,
                   env=c.clean_env())
    return dest


def main() -> None:
    p = c.arg_parser(__doc__.splitlines()[0], runs=40, warmup=3)
    p.add_argument("--old", default="5a5ea33", metavar="REV", help="the revision to compare with")
    args = p.parse_args()
    c.require_tool()
    runs, warmup = c.runs_of(args)
    with c.workdir("startup", args.keep) as where:
        db = where / "users.db"
        c.build_store(db, 1000, log=c.log)
        login = c.account(500)["login"]
        tree = old_tree(args.old, where)
        new_cwd = where / "new"
        new_cwd.mkdir()
        # Both through `python -m b24recover` from a folder that is not a checkout, so the only
        # difference is the code: this checkout (installed editable) or the revision (PYTHONPATH).
        old_env = c.clean_env(PYTHONPATH=str(tree))
        new_env = c.clean_env()

        def case(argv, env, cwd):
            def run(_round):
                got = c.run_process([str(c.PY), "-m", "b24recover", "--db", str(db), *argv], env=env, cwd=cwd)
                c.expect(got, " ".join(argv))
                return got
            return run

        lookup = ["lookup", login, "--json"]
        show = ["user", "show", login, "--json"]
        cases = [("lookup (this checkout)", case(lookup, new_env, new_cwd)),
                 (f"lookup ({args.old})", case(lookup, old_env, tree)),
                 ("user show (this checkout)", case(show, new_env, new_cwd)),
                 (f"user show ({args.old})", case(show, old_env, tree))]
        samples = c.interleave(cases, runs, warmup, log=c.log)
    results = {name: {**c.stats(got), "peak_rss_mib": None} for name, got in samples.items()}
    c.print_timings(f"start-up, medians of {runs} interleaved rounds", results)
    new, old = results["lookup (this checkout)"]["median_ms"], results[f"lookup ({args.old})"]["median_ms"]
    new_cpu = results["lookup (this checkout)"]["cpu_median_ms"]
    old_cpu = results[f"lookup ({args.old})"]["cpu_median_ms"]
    # Wall time on a shared machine is noisy; CPU time of the process is the steadier measure.
    checks = [c.check("lookup wall vs " + args.old, c.ratio(new, old), 1.05, "x", f"{new} ms vs {old} ms"),
              c.check("lookup CPU vs " + args.old, c.ratio(new_cpu, old_cpu), 1.05, "x",
                      f"{new_cpu} ms vs {old_cpu} ms")]
    c.print_checks(checks)
    c.write_report("startup", {"old": args.old, "results": results, "checks": checks}, quick=args.quick)


if __name__ == "__main__":
    main()
