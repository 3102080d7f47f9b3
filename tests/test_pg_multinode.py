"""Several nodes on one PostgreSQL store, as real processes that overlap (SPEC §5, §7, issue 12):
concurrent `outbox send` deliver each message once; a purge of 200,000 stale rows runs while
other nodes issue and redeem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from smtp_server import smtp_server
from test_outbox_claims import SENDERS, Barrier, make_messages, message_ids, run_senders, write_config

from b24recover.clock import FixedClock
from conftest import ROOT, add_user, connect_db
from test_purge_concurrency import BYSTANDERS, DAY, OWNERS, PASSWORD, WORKERS
from tokenhelp import link_parts


@pytest.fixture
def pg_only(engine):
    if engine != "postgresql":
        pytest.skip("several nodes share a PostgreSQL store")


@pytest.fixture
def clock():
    # Subprocesses stamp leases and tokens with the real time; the in-process clock starts there too.
    return FixedClock(int(time.time()))


def outbox_rows(db_path) -> list:
    conn = connect_db(db_path)
    try:
        return conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def test_four_senders_on_postgresql_deliver_each_message_exactly_once(pg_only, store, tmp_path, db_path,
                                                                     config_path):
    make_messages(store, tmp_path, config_path, 120)
    assert Counter(r["status"] for r in outbox_rows(db_path)) == {"failed": 120}
    handler = Barrier(SENDERS, db_path)
    with smtp_server(handler) as server:
        write_config(config_path, server.port)
        senders = run_senders(db_path, config_path, SENDERS)
        results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in senders]
    for _, _, err, code in results:
        assert code == 0, err.decode()
    ids = message_ids(server)
    assert len(ids) == 120 and len(set(ids)) == 120, Counter(i for i in ids if ids.count(i) > 1)
    stored = outbox_rows(db_path)
    assert {r["status"] for r in stored} == {"sent"}
    assert set(ids) == {f"<{r['message_id']}>" for r in stored}
    assert sum(json.loads(out)["sent"] for _, out, _, _ in results) == 120
    # They really raced: all four held a claim at the same instant.
    assert handler.claimants_at_release == {pid for pid, *_ in results}


# ---- a purge of 200,000 stale rows while other nodes issue and redeem -------------------------

def pg_query(db_path, sql, params=()) -> list[tuple]:
    conn = connect_db(db_path)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def pg_seed(proc, cli, db_path, stale: int) -> dict:
    """test_purge_concurrency.seed on PostgreSQL: accounts through the CLI, then the stale rows in
    one INSERT ... SELECT over generate_series (seconds, not minutes) and a few rows the purge must
    leave alone."""
    assert proc("init").exit_code == 0
    for login in WORKERS + OWNERS + BYSTANDERS:
        add_user(cli, login)
    now = int(time.time())
    conn = connect_db(db_path)
    try:
        owners = [r[0] for r in conn.execute("SELECT id FROM users WHERE login IN (?, ?, ?, ?) ORDER BY id", OWNERS)]
        # the same rows as fill_stale: ended 31-60 days ago, superseded/used/revoked in turn
        conn.execute(
            "INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at, expires_at, ended_at)"
            " SELECT (?::bigint[])[i % 4 + 1], 'link', 'none', encode(sha256(('s' || i)::bytea), 'hex'),"
            " (ARRAY['superseded', 'used', 'revoked'])[i % 3 + 1], e - 3600, e + 3600, e"
            " FROM (SELECT i, ? - 31 * 86400 - (i::bigint * 29 * 86400) / ? AS e"
            "       FROM generate_series(0, ? - 1) AS i) AS s",
            (owners, now, stale, stale))
        for uid in owners:  # expired long ago but never ended: stale as "expired"
            conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                         " expires_at) VALUES (?, 'link', 'none', ?, 'active', ?, ?)",
                         (uid, f"x{uid}", now - 50 * DAY, now - 49 * DAY))
        recent = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                              " expires_at, ended_at) VALUES (?, 'link', 'none', 'r', 'used', ?, ?, ?) RETURNING id",
                              (owners[0], now - DAY, now, now - DAY)).fetchone()[0]
        held = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                            " expires_at, ended_at) VALUES (?, 'link', 'email', 'h', 'revoked', ?, ?, ?) RETURNING id",
                            (owners[0], now - 90 * DAY, now - 89 * DAY, now - 89 * DAY)).fetchone()[0]
        conn.execute("INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient,"
                     " created_at) VALUES (?, ?, 'email', 'recovery_link', 'en', 'old@example.com', ?)",
                     (owners[0], held, now))
        conn.execute("ANALYZE control_strings")
    finally:
        conn.close()
    keep = {}
    for login in BYSTANDERS:  # valid control strings nobody has used yet: the purge must not touch them
        r = proc("token", "issue", login, "--via", "none", "--json")
        assert r.exit_code == 0, r.stderr
        keep[login] = (r.json["id"], link_parts(r.json["link"])[1])
    return {"recent": recent, "held": held, "keep": keep, "expired": len(OWNERS)}


def test_purge_200k_on_postgresql_while_other_nodes_issue_and_redeem(pg_only, proc, cli, db_path, config_path):
    stale = 200_000
    ctl = pg_seed(proc, cli, db_path, stale)
    assert sum(proc("audit", "tokens", "--json").json["stale"].values()) == stale + len(OWNERS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path)]
    go = config_path.parent / "go"
    purge = subprocess.Popen([*argv, "audit", "tokens", "--purge", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT, env=env)
    done = threading.Event()
    outcomes, counter, lock = [], [0], threading.Lock()

    def work(login: str) -> None:
        while not go.exists():  # released with the purge
            time.sleep(0.001)
        rounds = 0
        while not done.is_set() or rounds < 2:
            issued = proc("token", "issue", login, "--via", "none", "--force", "--json")
            outcomes.append(("issue", login, issued))
            if issued.exit_code != 0:
                return
            with lock:
                counter[0] += 1
                password = f"{PASSWORD} #{counter[0]}"
            redeemed = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                            input=f"{link_parts(issued.json['link'])[1]}\n{password}\n")
            outcomes.append(("redeem", login, redeemed, issued.json["id"]))
            rounds += 1

    threads = [threading.Thread(target=work, args=(login,)) for login in WORKERS]
    for t in threads:
        t.start()
    go.touch()
    try:
        out, err = purge.communicate(timeout=120)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=120)
    assert purge.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["purged"] == stale + len(OWNERS) and report["held"] == 1
    failed = [(o[0], o[1], o[2].exit_code, o[2].stderr) for o in outcomes if o[2].exit_code != 0]
    assert failed == [] and "Traceback" not in err.decode()
    redeems = [o for o in outcomes if o[0] == "redeem"]
    assert len(redeems) >= 2 * len(WORKERS)
    # They overlapped: worker events sit between the purge's start and end in the one ordered chain.
    trail = pg_query(db_path, "SELECT id, action FROM audit_log WHERE action IN"
                              " ('audit.purge.start', 'audit.purge', 'token.issue', 'redeem') ORDER BY id")
    began = next(i for i, a in trail if a == "audit.purge.start")
    ended = next(i for i, a in trail if a == "audit.purge")
    inside = [a for i, a in trail if began < i < ended]
    # (200k rows take PostgreSQL a few seconds: which of the workers' writes land inside varies)
    assert {"token.issue", "redeem"} & set(inside), "no worker wrote while the purge ran"
    for _, _, _, token_id in redeems:
        assert pg_query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("used",)]
    assert pg_query(db_path, "SELECT count(*) FROM control_strings WHERE id IN (?, ?)",
                    (ctl["recent"], ctl["held"])) == [(2,)]
    for login, (token_id, secret) in ctl["keep"].items():  # no active control string lost
        assert pg_query(db_path, "SELECT state FROM control_strings WHERE id = ?", (token_id,)) == [("active",)]
        r = proc("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
                 input=f"{secret}\n{PASSWORD} kept\n")
        assert r.exit_code == 0, r.stderr
    assert proc("audit", "tokens", "--check").exit_code == 0
    assert proc("audit", "log", "--verify").exit_code == 0
