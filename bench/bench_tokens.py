"""Issue 3: `token issue --via email` (issue + deliver to the Maildir outbox) and `redeem`
(control string and new password on stdin, bcrypt cost 12) as whole processes, interleaved with
bcrypt's own time measured in the same run: one cost-12 hash by passlib's bcrypt_sha256 (the
scheme b24recover uses) and by bcrypt.hashpw, each as a `python -c` process and in-process.

Target: redeem median <= bcrypt's own time (in-process bcrypt_sha256, cost 12) + 150 ms.

    .venv/bin/python bench/bench_tokens.py            # 10,000-account store, 15 runs
    .venv/bin/python bench/bench_tokens.py --quick    # 1,000 accounts, 5 runs
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import common as c

ROUNDS = 12  # b24recover's default bcrypt cost; the benchmark runs with the default config
OVERHEAD_MS = 150.0
PASSLIB_CODE = ("import os\nfrom passlib.hash import bcrypt_sha256\n"
                f"bcrypt_sha256.using(rounds={ROUNDS}).hash(os.urandom(16).hex())\n")
BCRYPT_CODE = f"import bcrypt, os\nbcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt({ROUNDS}))\n"
CHECKWORD = re.compile(r"USER_CHECKWORD=([0-9a-z]{32})")


class Maildir:
    """The outbox's mail/new folder: which messages a command delivered, and to whom."""

    def __init__(self, db: Path):
        self.new = db.parent / f"{db.name}.outbox" / "mail" / "new"
        self.seen = self._names()

    def _names(self) -> set[str]:
        return set(p.name for p in self.new.iterdir()) if self.new.is_dir() else set()

    def delivered(self) -> list[email.message.EmailMessage]:
        names = self._names()
        fresh, self.seen = names - self.seen, names
        return [email.message_from_bytes((self.new / n).read_bytes(), policy=email.policy.default)
                for n in sorted(fresh)]


def issue_case(db, maildir: Maildir, pick):
    def run(r, rss=False):
        a = c.account(pick(r))
        out = c.expect(c.run_process(c.b24(db, "token", "issue", a["login"], "--via", "email", "--json"),
                                     cwd=db.parent, rss=rss), f"token issue {a['login']}")
        if json.loads(out.stdout)["delivery"]["status"] != "sent":
            raise SystemExit(f"token issue {a['login']}: not delivered: {out.stdout.decode()}")
        msgs = maildir.delivered()
        if len(msgs) != 1 or msgs[0]["To"] != a["email"] or not CHECKWORD.search(msgs[0].get_content()):
            raise SystemExit(f"token issue {a['login']}: expected one recovery message in {maildir.new}")
        return out
    return run


def pre_issue(db, login: str) -> str:
    """An untimed control string for a redeem run, via `--via none` (the link is printed once)."""
    out = c.expect(c.run_process(c.b24(db, "token", "issue", login, "--via", "none", "--json"), cwd=db.parent),
                   f"token issue {login} --via none")
    return parse_qs(urlsplit(json.loads(out.stdout)["link"]).query)["USER_CHECKWORD"][0]


def redeem_case(db, maildir: Maildir, pick, control_strings: dict):
    def run(r, rss=False):
        a = c.account(pick(r))
        password = secrets.token_urlsafe(18)  # stdin only: never argv
        stdin = f"{control_strings.pop(pick(r))}\n{password}\n".encode()
        out = c.expect(c.run_process(c.b24(db, "redeem", a["login"], "--control-string-stdin", "--password-stdin",
                                           "--json"), stdin=stdin, cwd=db.parent, rss=rss), f"redeem {a['login']}")
        result = json.loads(out.stdout)
        if not result.get("password_changed") or [n["status"] for n in result["notices"]] != ["sent"]:
            raise SystemExit(f"redeem {a['login']}: unexpected answer {result}")
        maildir.delivered()  # the "password changed" notice
        return out
    return run


def process_case(code: str, what: str):
    def run(r, rss=False):
        return c.expect(c.run_process([str(c.PY), "-c", code], rss=rss), what)
    return run


def in_process_cases():
    try:
        import bcrypt
        from passlib.hash import bcrypt_sha256
    except ImportError:
        raise SystemExit(f"bcrypt and passlib are needed: run this with {c.PY}") from None
    hasher = bcrypt_sha256.using(rounds=ROUNDS)
    hasher.hash("warm")  # passlib picks its backend on first use; keep that out of the timings

    def passlib_run(r, rss=False):
        return c.in_process(lambda: hasher.hash(secrets.token_hex(16)))

    def bcrypt_run(r, rss=False):
        return c.in_process(lambda: bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(ROUNDS)))
    return passlib_run, bcrypt_run


def main() -> None:
    p = c.arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=None, help="accounts in the store (default 10,000; quick 1,000)")
    p.add_argument("--profile", action="store_true", help="profile a redeem even when the target is met")
    args = p.parse_args()
    runs, warmup = c.runs_of(args)
    n = args.accounts or (1_000 if args.quick else 10_000)
    rounds = runs + warmup + 2  # + one run under time(1) for peak memory, one under cProfile
    if n < 2 * rounds:
        raise SystemExit(f"--accounts must be at least {2 * rounds} for {runs} runs")
    c.require_tool()
    passlib_run, bcrypt_run = in_process_cases()

    with c.workdir("tokens", args.keep) as tmp:
        db = tmp / "accounts.db"
        build_seconds = round(c.build_store(db, n, log=c.log), 2)
        maildir = Maildir(db)
        # Distinct accounts per run: no throttle, no supersede, every redeem on a fresh string.
        issue_pick = lambda r: (r + warmup) * 2  # noqa: E731
        redeem_pick = lambda r: (r + warmup) * 2 + 1  # noqa: E731
        c.log(f"issuing {rounds} control strings for the redeem runs (untimed)")
        control_strings = {redeem_pick(r): pre_issue(db, c.account(redeem_pick(r))["login"])
                           for r in range(-warmup, runs + 2)}

        names = {
            "issue": "token issue --via email (+ Maildir delivery)",
            "redeem": "redeem (stdin; bcrypt 12; notice to Maildir)",
            "passlib_proc": f"python -c bcrypt_sha256 cost {ROUNDS} (process)",
            "bcrypt_proc": f"python -c bcrypt.hashpw cost {ROUNDS} (process)",
            "passlib_in": f"bcrypt_sha256 cost {ROUNDS} (in-process)",
            "bcrypt_in": f"bcrypt.hashpw cost {ROUNDS} (in-process)",
            "python": "python -c pass (interpreter start)",
        }
        cases = [
            (names["issue"], issue_case(db, maildir, issue_pick)),
            (names["passlib_proc"], process_case(PASSLIB_CODE, "bcrypt_sha256 baseline")),
            (names["redeem"], redeem_case(db, maildir, redeem_pick, control_strings)),
            (names["bcrypt_proc"], process_case(BCRYPT_CODE, "bcrypt baseline")),
            (names["passlib_in"], passlib_run),
            (names["python"], process_case("pass", "python start")),
            (names["bcrypt_in"], bcrypt_run),
        ]
        c.log(f"{len(cases)} cases x ({warmup} warm-up + {runs} measured) rounds, interleaved")
        samples = c.interleave(cases, runs, warmup, log=c.log)
        results = {name: c.stats(samples[name]) for name, _ in cases}
        for name, fn in cases:
            peak = fn(runs, rss=True).max_rss_kb
            results[name]["peak_rss_mib"] = round(peak / 1024, 1) if peak else None
        redeem_ms, budget = results[names["redeem"]]["median_ms"], results[names["passlib_in"]]["median_ms"]
        prof = None
        if args.profile or redeem_ms > budget + OVERHEAD_MS:
            a, cs = c.account(redeem_pick(runs + 1)), control_strings[redeem_pick(runs + 1)]
            prof = c.cprofile(c.b24(db, "redeem", a["login"], "--control-string-stdin", "--password-stdin", "--json"),
                              stdin=f"{cs}\n{secrets.token_urlsafe(18)}\n".encode(), cwd=db.parent)

    med = {key: results[name]["median_ms"] for key, name in names.items()}
    ratios = {
        "redeem - bcrypt_sha256 in-process (ms)": round(med["redeem"] - med["passlib_in"], 1),
        "redeem - bcrypt_sha256 process (ms)": round(med["redeem"] - med["passlib_proc"], 1),
        "redeem / bcrypt_sha256 in-process": c.ratio(med["redeem"], med["passlib_in"]),
        "issue - python start (ms)": round(med["issue"] - med["python"], 1),
        "bcrypt_sha256 / bcrypt.hashpw in-process": c.ratio(med["passlib_in"], med["bcrypt_in"]),
        "process - in-process, bcrypt_sha256 (ms)": round(med["passlib_proc"] - med["passlib_in"], 1),
    }
    checks = [
        c.check("redeem <= bcrypt in-process + 150 ms", med["redeem"], med["passlib_in"] + OVERHEAD_MS, "ms",
                f"bcrypt_sha256 in-process {med['passlib_in']:.1f} ms + 150"),
        c.check("redeem <= bcrypt process + 150 ms", med["redeem"], med["passlib_proc"] + OVERHEAD_MS, "ms",
                f"python -c bcrypt_sha256 {med['passlib_proc']:.1f} ms + 150 (looser)"),
    ]
    c.print_timings(f"control strings as whole processes, bcrypt cost {ROUNDS}; {runs} interleaved runs (+{warmup} warm-up)", results)
    c.table("Differences and ratios", ["what", "value"], [[k, v] for k, v in ratios.items()])
    c.print_checks(checks)
    if prof:
        c.print_cprofile("Where a redeem's time goes", prof)
    c.write_report("tokens", {
        "params": {"accounts": n, "runs": runs, "warmup": warmup, "quick": args.quick, "bcrypt_rounds": ROUNDS,
                   "build_seconds": build_seconds},
        "measurements": results, "baseline_code": {"bcrypt_sha256": PASSLIB_CODE, "bcrypt": BCRYPT_CODE},
        "ratios": ratios, "checks": checks, "pass": checks[0]["pass"], "profile": prof,
    }, quick=args.quick)


if __name__ == "__main__":
    main()
