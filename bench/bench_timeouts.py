"""How long the failure paths take, against the time they are configured to take: the timings
the tests no longer assert (a wall-clock bound in a test fails on a slow or busy machine).

- a closed SMTP port is refused at once: compared with a plain TCP connect to an open port;
- a silent SMTP server is given up after `smtp_timeout` (1 s);
- an SMS `command` that hangs is stopped after `http_timeout` (1 s);
- a store held locked by another process is given up after B24RECOVER_BUSY_TIMEOUT_MS (300 ms),
  compared with `lookup` (process start-up, no lock needed) measured in the same run.

    .venv/bin/python bench/bench_timeouts.py [--quick] [--runs N]
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import time
from pathlib import Path

import common as c

sys.path.insert(0, str(c.ROOT))

from b24recover.config import Settings  # noqa: E402
from b24recover.delivery import DeliveryError  # noqa: E402
from b24recover.delivery.mail import build_email, send_email  # noqa: E402
from b24recover.delivery.sms import send_sms  # noqa: E402

SMTP_TIMEOUT_S = 1
COMMAND_TIMEOUT_S = 1
BUSY_TIMEOUT_MS = 300


def message():
    return build_email(sender="noreply@example.com", recipient="ivan@example.com", subject="Reset",
                       body="text", message_id="m1.bench@example.com", lang="en")


def failing(fn) -> c.Run:
    def call():
        try:
            fn()
        except DeliveryError:
            return
        raise SystemExit("the delivery was expected to fail")
    return c.in_process(call)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    args = c.arg_parser(__doc__, runs=5, warmup=1).parse_args()
    runs, warmup = c.runs_of(args)
    c.require_tool()
    results, checks = {}, []
    with c.workdir("timeouts", args.keep) as tmp:
        settings = Settings(db_path=tmp / "b24.db")
        settings.mail.transport, settings.mail.smtp_host = "smtp", "127.0.0.1"

        # a TCP connect to an open port: the floor for "refused at once"
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            port = listener.getsockname()[1]
            connects = [c.in_process(lambda: socket.create_connection(("127.0.0.1", port)).close())
                        for _ in range(warmup + runs)][warmup:]
        settings.mail.smtp_port, settings.mail.smtp_timeout = closed_port(), 3600
        refused = [failing(lambda: send_email(settings, message())) for _ in range(warmup + runs)][warmup:]

        with socket.socket() as silent:  # accepts (backlog) but never says hello
            silent.bind(("127.0.0.1", 0))
            silent.listen(64)
            settings.mail.smtp_port, settings.mail.smtp_timeout = silent.getsockname()[1], SMTP_TIMEOUT_S
            timed_out = [failing(lambda: send_email(settings, message())) for _ in range(runs)]

        hang = tmp / "hang.py"
        hang.write_text("import time\ntime.sleep(60)\n")
        settings.sms.transport, settings.sms.command = "command", [sys.executable, str(hang)]
        settings.sms.http_timeout = COMMAND_TIMEOUT_S
        stopped = [failing(lambda: send_sms(settings, "+79123456789", "text")) for _ in range(runs)]

        db = tmp / "store.db"
        c.init_store(db)
        env = c.clean_env(B24RECOVER_BUSY_TIMEOUT_MS=str(BUSY_TIMEOUT_MS))
        looked = [c.run_process(c.b24(db, "lookup", "nobody", "--json"), env=env, cwd=tmp)
                  for _ in range(warmup + runs)][warmup:]
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            locked = [c.run_process(c.b24(db, "user", "block", "nobody", "--json"), env=env, cwd=tmp)
                      for _ in range(runs)]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        if any(r.returncode != 8 for r in locked):
            raise SystemExit(f"the locked store did not answer exit 8: {locked[0].stderr.decode(errors='replace')}")

    for name, rs in (("tcp connect (baseline)", connects), ("smtp closed port", refused),
                     (f"smtp silent server, timeout {SMTP_TIMEOUT_S} s", timed_out),
                     (f"sms command hangs, timeout {COMMAND_TIMEOUT_S} s", stopped),
                     ("lookup, no lock (baseline)", looked),
                     (f"store locked, busy timeout {BUSY_TIMEOUT_MS} ms", locked)):
        results[name] = {**c.stats(rs), "peak_rss_mib": None}
    med = {name: r["median_ms"] / 1000 for name, r in results.items()}
    base_tcp, base_cli = med["tcp connect (baseline)"], med["lookup, no lock (baseline)"]
    checks.append(c.check("closed port: refused within 100 ms", med["smtp closed port"], 0.1, "s",
                          f"{c.ratio(med['smtp closed port'], base_tcp)}x a TCP connect"))
    checks.append(c.check("silent server: timeout / configured <= 1.5", med[next(k for k in med if 'silent' in k)]
                          / SMTP_TIMEOUT_S, 1.5, "x", "at least 1.0 expected too"))
    checks.append(c.check("hung command: stop / configured <= 1.5", med[next(k for k in med if 'hangs' in k)]
                          / COMMAND_TIMEOUT_S, 1.5, "x", "at least 1.0 expected too"))
    extra = med[next(k for k in med if "locked" in k)] - base_cli
    checks.append(c.check("locked store: (locked - lookup) / busy timeout <= 3", extra / (BUSY_TIMEOUT_MS / 1000),
                          3.0, "x", f"{extra * 1000:.0f} ms over start-up; the default would be 10 s"))
    c.print_timings("Failure paths", results)
    c.print_checks(checks)
    c.write_report("timeouts", {"results": results, "checks": checks, "pass": all(x["pass"] for x in checks)},
                   quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
