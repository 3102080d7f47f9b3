"""Exactly-once delivery (SPEC §5): exclusive leased claims, only the claimant marks, a stable
Message-ID per message. Concurrent senders are real processes against a real aiosmtpd."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

import pytest
from smtp_server import Recorder, smtp_server

from b24recover.clock import FixedClock
from b24recover.services import outbox as outbox_service
from b24recover.store import outbox as outbox_store
from conftest import ROOT, connect_db, hold_write_lock

SENDERS = 4


@pytest.fixture
def clock():
    # Subprocesses stamp leases with the real time; the in-process clock starts there too.
    return FixedClock(int(time.time()))


def write_config(config_path, port: int, timeout: str = "30s") -> None:
    config_path.write_text(
        'portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 4\n'
        f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "{timeout}"\n',
        encoding="utf-8")


def make_messages(store, tmp_path, config_path, n: int) -> None:
    """n accounts, each sent a control string by `bulk reset` to a port where nobody listens:
    n failed messages (unless the caller stops delivery, see queued_messages)."""
    rows = ["login,email"] + [f"user{i:03d},user{i:03d}@example.com" for i in range(n)]
    (tmp_path / "users.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert store("user", "import", str(tmp_path / "users.csv")).exit_code == 0
    (tmp_path / "logins.txt").write_text("\n".join(f"user{i:03d}" for i in range(n)) + "\n", encoding="utf-8")
    with dead_port() as port:
        write_config(config_path, port, "3s")
        store("bulk", "reset", str(tmp_path / "logins.txt"), "--mode", "control-string", "--json")


@contextmanager
def dead_port():
    """A port that refuses connections and that no other process can take meanwhile: bound, not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def rows(db_path) -> list:
    conn = connect_db(db_path, rows_by_name=True)
    try:
        return conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def message_ids(server) -> list[str]:
    return [email.message_from_bytes(data, policy=email.policy.default)["Message-ID"].strip()
            for _, _, data in server.messages]


class Barrier(Recorder):
    """Holds each delivery at DATA until `parties` senders are inside DATA at once, and records
    which senders held a claim at that instant (from the store's lease column)."""

    def __init__(self, parties: int, db_path):
        super().__init__()
        self.parties, self.db_path = parties, db_path
        self.waiting = 0
        self.claimants_at_release: set[int] | None = None
        self.released: asyncio.Event | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.claimants_at_release is None:
            self.released = self.released or asyncio.Event()
            self.waiting += 1
            if self.waiting >= self.parties:
                conn = connect_db(self.db_path)
                owners = conn.execute("SELECT lease_owner FROM outbox WHERE status = 'sending'").fetchall()
                conn.close()
                self.claimants_at_release = {int(o.split(".")[0]) for (o,) in owners}
                self.released.set()
            else:
                try:
                    await asyncio.wait_for(self.released.wait(), 20)  # below the senders' smtp_timeout
                except asyncio.TimeoutError:  # never all at once: give up; the overlap assertion fails
                    self.claimants_at_release = self.claimants_at_release or set()
                    self.released.set()
        return await super().handle_DATA(server, session, envelope)


def run_senders(db_path, config_path, n: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "outbox", "send", "--json"]
    return [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=env, cwd=ROOT) for _ in range(n)]


@pytest.mark.parametrize("state", ["failed", "queued"])
def test_concurrent_senders_deliver_each_message_exactly_once(store, tmp_path, db_path, config_path,
                                                              monkeypatch, state):
    with monkeypatch.context() as patch:  # not monkeypatch.undo(): that would undo PGOPTIONS too
        if state == "queued":
            # As if each issuing process died right after its commit: the messages stay queued.
            patch.setattr(outbox_service, "deliver", lambda ctx, mid: {"status": "queued", "recipient": None,
                                                                       "error": None})
        make_messages(store, tmp_path, config_path, 200)
    assert Counter(r["status"] for r in rows(db_path)) == {state: 200}
    handler = Barrier(SENDERS, db_path)
    with smtp_server(handler) as server:
        write_config(config_path, server.port)
        senders = run_senders(db_path, config_path, SENDERS)
        results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in senders]
    for pid, out, err, code in results:
        assert code == 0, err.decode()
    ids = message_ids(server)
    assert len(ids) == 200, Counter(i for i in ids if ids.count(i) > 1)
    assert len(set(ids)) == 200
    stored = rows(db_path)
    assert {r["status"] for r in stored} == {"sent"}
    assert set(ids) == {f"<{r['message_id']}>" for r in stored}
    assert sum(json.loads(out)["sent"] for _, out, _, _ in results) == 200
    # They really raced: all four held a claim at the same instant.
    assert handler.claimants_at_release == {pid for pid, *_ in results}


def test_a_dead_claimants_message_waits_for_its_lease(store, tmp_path, db_path, config_path, clock):
    make_messages(store, tmp_path, config_path, 1)
    (msg,) = rows(db_path)
    from b24recover.config import load_settings
    from b24recover.services.context import Ctx

    lease = outbox_service.lease_seconds(Ctx(store=None, settings=load_settings(str(config_path), str(db_path))),
                                         "email")
    with connect_db(db_path, autocommit=True) as conn:  # a sender claims it, then dies
        assert outbox_store.claim(conn, msg["id"], owner="4242.dead", now=clock.now(), lease=lease,
                                  host="portal.example.com")
        assert not outbox_store.claim(conn, msg["id"], owner="4343.other", now=clock.now(), lease=lease,
                                      host="portal.example.com")
    with smtp_server() as server:
        write_config(config_path, server.port)
        clock.advance(lease - 1)
        early = store("outbox", "send", "--json")
        assert early.exit_code == 0 and early.json["sent"] == 0 and server.messages == []
        assert rows(db_path)[0]["status"] == "sending"
        listed = store("outbox", "list", "--status", "sending", "--json").json["messages"]
        assert [(m["id"], m["lease_ended"]) for m in listed] == [(msg["id"], False)]
        clock.advance(1)
        assert store("outbox", "list", "--json").json["messages"][0]["lease_ended"] is True
        late = store("outbox", "send", "--json")
        assert late.exit_code == 0 and late.json["sent"] == 1 and len(server.messages) == 1
    (after,) = rows(db_path)
    assert after["status"] == "sent" and after["lease_owner"] is None
    assert message_ids(server) == [f"<{after['message_id']}>"]
    with connect_db(db_path, autocommit=True) as conn:  # the dead claimant cannot mark it any more
        assert not outbox_store.mark_failed(conn, msg["id"], "4242.dead", "late answer")
        assert not outbox_store.mark_sent(conn, msg["id"], "4242.dead", clock.now())
    assert rows(db_path)[0]["status"] == "sent"


class KillBeforeMark(Recorder):
    """Accepts the message (250 to DATA) while holding the store's write lock, so the sender
    cannot record the delivery; kills the sender, then lets the lock go. The server has the
    message, the store never hears of it."""

    def __init__(self, db_path):
        super().__init__()
        self.db_path, self.victim = db_path, None

    async def handle_DATA(self, server, session, envelope):
        await super().handle_DATA(server, session, envelope)
        if self.victim is not None:
            lock = hold_write_lock(self.db_path)
            asyncio.get_running_loop().create_task(self._kill_then_unlock(lock, self.victim))
            self.victim = None
        return "250 2.0.0 Ok"

    async def _kill_then_unlock(self, lock, pid: int) -> None:
        await asyncio.sleep(0.3)  # the sender reads the 250 and waits for the lock to record it
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.1)
        lock.execute("ROLLBACK")
        lock.close()


def test_kill_between_acceptance_and_mark_repeats_that_message_once_with_its_id(store, tmp_path, db_path,
                                                                                config_path, clock, proc):
    make_messages(store, tmp_path, config_path, 3)
    handler = KillBeforeMark(db_path)
    with smtp_server(handler) as server:
        write_config(config_path, server.port)
        (sender,) = run_senders(db_path, config_path, 1)
        handler.victim = sender.pid
        sender.communicate(timeout=60)
        assert sender.returncode == -signal.SIGKILL
        assert len(server.messages) == 1
        first = message_ids(server)[0]
        killed = [r for r in rows(db_path) if r["status"] == "sending"]
        assert len(killed) == 1 and f"<{killed[0]['message_id']}>" == first
        # Right after the crash a new sender leaves the leased message alone and sends the others.
        again = proc("outbox", "send", "--json")
        assert again.exit_code == 0 and again.json["sent"] == 2
        assert len(server.messages) == 3 and len(set(message_ids(server))) == 3
        # Once the lease has ended, it goes out again: the one repeat, with the same Message-ID.
        clock.advance(killed[0]["lease_until"] - clock.now() + 1)
        late = store("outbox", "send", "--json")
        assert late.json["sent"] == 1
    ids = Counter(message_ids(server))
    assert ids == {first: 2, **{f"<{r['message_id']}>": 1 for r in rows(db_path) if f"<{r['message_id']}>" != first}}
    assert {r["status"] for r in rows(db_path)} == {"sent"}


class FailOnce(Recorder):
    """Takes the message in, then answers 451 the first time (a temporary failure)."""

    def __init__(self):
        super().__init__()
        self.failed = False

    async def handle_DATA(self, server, session, envelope):
        await super().handle_DATA(server, session, envelope)
        if not self.failed:
            self.failed = True
            return "451 4.3.0 try again later"
        return "250 OK"


def test_message_id_is_stable_across_retries_and_unique_per_store(store, tmp_path, db_path, config_path):
    make_messages(store, tmp_path, config_path, 1)
    with smtp_server(FailOnce()) as server:
        write_config(config_path, server.port)
        assert store("outbox", "send", "--json").json["failed"] == 1
        assert store("outbox", "send", "--json").json["sent"] == 1
    first, second = message_ids(server)
    (row,) = rows(db_path)
    assert first == second == f"<{row['message_id']}>" and row["attempts"] == 3
    assert row["message_id"].startswith(f"b24recover.{row['id']}.")
    assert row["message_id"].endswith("@portal.example.com")
    listed = store("outbox", "list", "--json").json["messages"][0]
    assert listed["message_id"] == row["message_id"]
    # Another store's message 1 gets another id.
    other = tmp_path / "other"
    other.mkdir()
    make_messages_in(other, config_path)
    with sqlite3.connect(other / "b24.db") as conn:
        (other_id,) = conn.execute("SELECT message_id FROM outbox").fetchone()
    with connect_db(db_path) as conn:
        (uid,) = conn.execute("SELECT uid FROM store_identity").fetchone()
    assert other_id.startswith("b24recover.1.") and uid[:16] not in other_id and row["id"] == 1
    assert row["message_id"] == f"b24recover.1.{uid[:16]}@portal.example.com"


def make_messages_in(folder, config_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    base = [sys.executable, "-m", "b24recover", "--db", str(folder / "b24.db"), "--config", str(config_path)]
    # The config still names the stopped test server: the message fails (exit 9) after its claim.
    for args, expected in ((["init"], 0), (["user", "add", "anna", "--email", "anna@example.com", "--password-stdin"], 0),
                           (["token", "issue", "anna", "--via", "email"], 9)):
        done = subprocess.run(base + args, env=env, cwd=ROOT, capture_output=True, timeout=60,
                              input=b"correct horse battery staple\n")
        assert done.returncode == expected, done.stderr


def test_no_table_references_the_outbox(store, engine, db_path):
    # Migration 0004_outbox_sending drops and recreates the outbox with foreign keys on: safe only
    # while no table points at it (a DROP would run that table's ON DELETE actions).
    with connect_db(db_path) as conn:
        if engine == "postgresql":
            refs = [tuple(r) for r in conn.execute(
                "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
                " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace")]
        else:
            tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            refs = [(t, fk[2]) for t in tables for fk in conn.execute(f"PRAGMA foreign_key_list('{t}')")]
    assert [t for t, parent in refs if parent == "outbox"] == []
    assert ("outbox", "users") in refs and ("outbox", "control_strings") in refs


def test_upgrade_keeps_messages_and_gives_them_ids(tmp_path, monkeypatch):
    from b24recover.store import db as store_db
    from b24recover.store import schema

    path = tmp_path / "old.db"
    older = [m for m in schema.MIGRATIONS if m[0] != "0004_outbox_sending"]
    monkeypatch.setattr(schema, "MIGRATIONS", older)
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", len(older))
    old, _ = store_db.init_store(path)
    with old.write() as conn:
        conn.execute("INSERT INTO users (login, login_key, created_at, updated_at) VALUES ('anna', 'anna', 1, 1)")
        for status in ("queued", "failed", "sent", "cancelled"):
            conn.execute("INSERT INTO outbox (user_id, channel, template, lang, recipient, status, attempts, created_at)"
                         " VALUES (1, 'email', 'recovery_link', 'en', 'a@example.com', ?, 2, 5)", (status,))
    old.close()
    monkeypatch.undo()
    new, applied = store_db.init_store(path)
    assert applied == ["0004_outbox_sending"]
    got = new.all("SELECT status, attempts, user_id, message_id, lease_owner FROM outbox ORDER BY id")
    assert [tuple(r) for r in got] == [(s, 2, 1, None, None) for s in ("queued", "failed", "sent", "cancelled")]
    assert new.one("PRAGMA foreign_key_check") is None and new.scalar("PRAGMA integrity_check") == "ok"
    assert outbox_store.pending_ids(new.conn, 10) == [1, 2]
    with new.write() as conn:
        assert outbox_store.claim(conn, 2, owner="1.a", now=10, lease=120, host="h")
        with pytest.raises(sqlite3.IntegrityError):  # 'sending' always has its lease, and only it
            conn.execute("UPDATE outbox SET status = 'sending', lease_owner = NULL WHERE id = 1")
    assert len(new.scalar("SELECT uid FROM store_identity")) == 32


def test_only_the_current_claimant_marks(store, tmp_path, db_path, config_path, clock):
    # A sender that overran its lease answers late, while a second sender holds the message.
    make_messages(store, tmp_path, config_path, 1)
    (msg,) = rows(db_path)
    now = clock.now()
    with connect_db(db_path, autocommit=True) as conn:
        assert outbox_store.claim(conn, msg["id"], owner="1.slow", now=now, lease=120, host="h")
        assert outbox_store.claim(conn, msg["id"], owner="2.next", now=now + 120, lease=120, host="h")
        assert not outbox_store.mark_sent(conn, msg["id"], "1.slow", now + 130)
        assert not outbox_store.mark_failed(conn, msg["id"], "1.slow", "late")
        assert not outbox_store.cancel(conn, msg["id"], "1.slow", "late")
        (row,) = rows(db_path)
        assert (row["status"], row["lease_owner"], row["lease_until"]) == ("sending", "2.next", now + 240)
        assert outbox_store.mark_sent(conn, msg["id"], "2.next", now + 131)
    (row,) = rows(db_path)
    assert (row["status"], row["sent_at"], row["lease_owner"], row["sealed"]) == ("sent", now + 131, None, None)


def test_diagnose_and_list_show_a_claimed_message(store, tmp_path, db_path, config_path, clock, monkeypatch):
    make_messages(store, tmp_path, config_path, 1)
    (msg,) = rows(db_path)
    with connect_db(db_path, autocommit=True) as conn:
        assert outbox_store.claim(conn, msg["id"], owner="4242.dead", now=clock.now(), lease=120, host="h")
    findings = store("diagnose", "user000", "--json").json["findings"]
    (delivery,) = [f for f in findings if f["code"].startswith("delivery_")]
    assert delivery["code"] == "delivery_queued" and "being sent" in delivery["message"]
    monkeypatch.setattr("b24recover.cli.render.is_tty", lambda stream=None: False)
    table = store("outbox", "list").stdout.splitlines()
    assert "sending (lease to " in table[1]
    clock.advance(120)
    assert "sending (lease ended " in store("outbox", "list").stdout.splitlines()[1]
    assert store("outbox", "list", "--status", "failed", "--json").json["messages"] == []
    bad = store("outbox", "list", "--status", "lost", "--json")
    assert bad.exit_code == 2


def test_purge_keeps_the_control_string_of_a_message_being_sent(store, tmp_path, db_path, config_path, clock):
    make_messages(store, tmp_path, config_path, 1)
    (msg,) = rows(db_path)
    with connect_db(db_path, autocommit=True) as conn:
        assert outbox_store.claim(conn, msg["id"], owner="4242.dead", now=clock.now(), lease=120, host="h")
    assert store("token", "revoke", "user000").exit_code == 0  # ends the control string; the message stays
    clock.advance(40 * 86400)
    r = store("audit", "tokens", "--purge", "--json")
    assert r.exit_code == 0 and r.json["held"] == 1
    with connect_db(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM control_strings").fetchone() == (1,)
    assert rows(db_path)[0]["status"] == "sending"
