"""Issue 13 item 2: how many messages arrive twice when `outbox send` is killed with SIGKILL
over and over while it delivers 300 mails to a real SMTP server (aiosmtpd on 127.0.0.1).

A message can only repeat when the kill lands between the server's acceptance and the sender's
mark; SPEC §5 allows at most that one message per kill, with the same Message-ID. Each run:
300 accounts, 300 failed control-string mails (`bulk reset` to a port where nobody listens),
then `outbox send` started and killed after a random delay until nothing is left. After each
kill the bench ends the dead sender's lease itself (`lease_until = 0`) instead of waiting the
real lease out; that is the only thing it writes into the store. A run without kills is the
baseline (0 repeats expected).

    .venv/bin/python bench/bench_outbox_crash.py            # 5 runs of 300 messages
    .venv/bin/python bench/bench_outbox_crash.py --quick    # 2 runs of 100 messages
"""

from __future__ import annotations

import logging
import random
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import common as c

KILL_AFTER = (0.05, 0.8)  # seconds after start-up (~0.25 s); a full send of 300 takes a few seconds
MAX_KILLS = 80  # per run; after that the last sender may finish


class Recorder:
    def __init__(self):
        self.ids: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.ids.append(message_from_bytes(envelope.original_content, policy=policy.default)["Message-ID"].strip())
        return "250 2.0.0 Ok"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(folder: Path, port: int) -> Path:
    path = folder / "b24recover.toml"
    path.write_text('portal_url = "https://portal.example.com"\n'
                    f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "10s"\n',
                    encoding="utf-8")
    return path


def prepare(folder: Path, n: int) -> Path:
    db = folder / "b24.db"
    c.build_store(db, n)
    logins = folder / "logins.txt"
    logins.write_text("".join(c.account(i)["login"] + "\n" for i in range(n)), encoding="utf-8")
    with socket.socket() as dead:  # bound, not listening: refuses, and no other process can take it
        dead.bind(("127.0.0.1", 0))
        cfg = config(folder, dead.getsockname()[1])
        run = c.run_process(c.b24(db, "--config", str(cfg), "bulk", "reset", str(logins), "--mode",
                                  "control-string"), cwd=folder)
    c.expect(run, "bulk reset to a dead port", code=9)
    return db


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending', 'failed')").fetchone()[0]


def sent_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {f"<{m}>" for (m,) in conn.execute("SELECT message_id FROM outbox WHERE status = 'sent'")}


def end_leases(db: Path) -> int:
    with sqlite3.connect(db, isolation_level=None) as conn:
        return conn.execute("UPDATE outbox SET lease_until = 0 WHERE status = 'sending'").rowcount


def one_run(n: int, kill: bool, rng: random.Random, log) -> dict:
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.ERROR)
    with c.workdir("outbox-crash") as folder:
        db = prepare(folder, n)
        with sqlite3.connect(db) as conn:
            (uid,) = conn.execute("SELECT substr(uid, 1, 16) FROM store_identity").fetchone()
        handler = Recorder()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5)
        controller.start()
        try:
            cfg = config(folder, port)
            kills = leases_ended = starts = unrecorded = 0
            t0 = time.perf_counter()
            while pending(db):
                starts += 1
                sender = subprocess.Popen(c.b24(db, "--config", str(cfg), "outbox", "send"), cwd=folder,
                                          env=c.clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    sender.wait(rng.uniform(*KILL_AFTER) + 0.25 if kill and kills < MAX_KILLS else 600)
                except subprocess.TimeoutExpired:
                    sender.send_signal(signal.SIGKILL)
                    sender.wait()
                    kills += 1
                    # The invariant per crash: at most the one message in flight was accepted
                    # by the server and not recorded.
                    ours = {i for i in handler.ids if f".{uid}@" in i}
                    unrecorded = max(unrecorded, len(ours - sent_ids(db)))
                leases_ended += end_leases(db)
            seconds = time.perf_counter() - t0
        finally:
            controller.stop()
        # Other processes on the machine may pick our port for a test of their own: not ours.
        foreign = [i for i in handler.ids if f".{uid}@" not in i]
        counts = Counter(i for i in handler.ids if f".{uid}@" in i)
        with sqlite3.connect(db) as conn:
            stored = {f"<{m}>" for (m,) in conn.execute("SELECT message_id FROM outbox WHERE status = 'sent'")}
            states = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
            odd = [dict(zip(("id", "status", "error", "attempts", "message_id"), r)) for r in conn.execute(
                "SELECT id, status, error, attempts, message_id FROM outbox WHERE status <> 'sent'")]
        twice = sum(1 for v in counts.values() if v == 2)
        more = sum(1 for v in counts.values() if v > 2)  # two kills, each in the window of this message
        result = {"messages": n, "kills": kills, "max_unrecorded_after_a_kill": unrecorded, "starts": starts,
                  "leases_ended": leases_ended, "deliveries": sum(counts.values()), "foreign": len(foreign),
                  "distinct": len(counts), "twice": twice, "more_than_twice": more,
                  "all_delivered": set(counts) == stored and len(stored) == n, "seconds": round(seconds, 2),
                  "states": states, "not_sent": odd, "delivered_not_recorded": sorted(set(counts) - stored),
                  "recorded_not_delivered": sorted(stored - set(counts))}
        log(f"  {'kill' if kill else 'baseline'}: {result}")
        return result


def main() -> None:
    args = c.arg_parser(__doc__.splitlines()[0], runs=5).parse_args()
    n, runs = (100, 2) if args.quick else (300, args.runs or 5)
    rng = random.Random(13)
    log = print
    baseline = one_run(n, False, rng, log)
    results = [one_run(n, True, rng, log) for _ in range(runs)]
    kills = sum(r["kills"] for r in results)
    twice = sum(r["twice"] for r in results)
    in_flight = sum(r["leases_ended"] for r in results)
    rows = [["baseline (no kill)", baseline["kills"], baseline["leases_ended"], baseline["deliveries"],
             baseline["twice"], baseline["more_than_twice"], baseline["all_delivered"], baseline["seconds"]]]
    rows += [[f"run {i + 1}", r["kills"], r["leases_ended"], r["deliveries"], r["twice"], r["more_than_twice"],
              r["all_delivered"], r["seconds"]] for i, r in enumerate(results)]
    c.table(f"outbox send killed with SIGKILL, {n} messages per run",
            ["run", "kills", "holding a claim", "deliveries", "twice", "3+ times", "all sent", "wall s"], rows)
    per_kill = twice / kills if kills else 0.0
    per_claim = twice / in_flight if in_flight else 0.0
    per_message = twice / (n * runs)
    print(f"\nrepeated messages: {twice} in {runs} runs of {n} ({per_message:.2%} of messages); "
          f"{kills} kills, {in_flight} of them while a message was claimed; "
          f"{per_kill:.1%} of kills ({per_claim:.1%} of those holding a claim) repeated a message")
    extra = sum(r["deliveries"] - r["messages"] for r in results)
    checks = [
        c.check("most messages accepted but unrecorded after a kill",
                max(r["max_unrecorded_after_a_kill"] for r in results), 1, "messages", "only the one in flight"),
        c.check("extra deliveries per kill holding a claim", extra / in_flight if in_flight else 0.0, 1.0, "ratio",
                "a repeat needs a kill in the window"),
        c.check("runs with a message lost", sum(not r["all_delivered"] for r in results + [baseline]), 0, "runs"),
        c.check("repeats without kills", baseline["twice"] + baseline["more_than_twice"], 0, "messages"),
    ]
    c.print_checks(checks)
    c.write_report("outbox_crash", {"baseline": baseline, "runs": results, "kills": kills, "repeated": twice,
                                    "repeated_per_kill": round(per_kill, 4), "kills_holding_a_claim": in_flight,
                                    "repeated_per_kill_holding_a_claim": round(per_claim, 4),
                                    "repeated_per_message": round(per_message, 5),
                                    "checks": checks, "pass": all(x["pass"] for x in checks)}, quick=args.quick)


if __name__ == "__main__":
    main()
