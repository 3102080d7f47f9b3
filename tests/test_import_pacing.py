"""Issue 13 item 19: an import writes in short transactions and, between them, leaves the write
lock free for other writers, while other imports of the same store wait for their turn (on the
import lock, not on SQLite's). Timing itself is measured in bench/bench_import_contention.py."""

from __future__ import annotations

import fcntl
import io
import os
import sqlite3

from conftest import connect_db

from b24recover.clock import FixedClock
from b24recover.config import load_settings
from b24recover.services import importer
from b24recover.services.audit import Pacer
from b24recover.services.context import Ctx
from b24recover.store.db import open_store

HEADER = "login,email,phone,name,last_name,lang,password_hash,social,blocked\n"
PROBE = ("INSERT INTO audit_log (id, at, actor, action, prev_hash, hash)"
         " SELECT coalesce(max(id), 0) + 1, 0, 'x', 'probe', '', '' FROM audit_log")


def write_at_once(db_path) -> None:
    """Another connection takes the store's write lock without waiting, writes, and rolls back."""
    if str(db_path).startswith("postgresql://"):
        from b24recover.store.pg import STORE_LOCK

        other = connect_db(db_path)
        other.execute("BEGIN")
        assert other.execute("SELECT pg_try_advisory_xact_lock(?)", (STORE_LOCK,)).fetchone()[0]
    else:
        other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    other.execute(PROBE)
    other.execute("ROLLBACK")
    other.close()


def turn_free(db_path) -> bool:
    """Whether another import could take its turn now (and give it back at once)."""
    if str(db_path).startswith("postgresql://"):
        from b24recover.store.locks import pg_key

        key = pg_key(".import-lock")
        other = connect_db(db_path)
        try:
            free = other.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]
            if free:
                other.execute("SELECT pg_advisory_unlock(?)", (key,))
            return free
        finally:
            other.close()
    fd = os.open(f"{db_path}.import-lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_pauses_free_the_write_lock_and_keep_the_import_turn(store, db_path, config_path):
    ctx = Ctx(store=open_store(db_path), settings=load_settings(str(config_path), str(db_path)),
              clock=FixedClock(), actor="test")
    seen = []
    ticks = (i / 10 for i in range(10**7))  # 0.1 s per reading

    def sleep(seconds):
        write_at_once(db_path)  # another writer gets the write lock at once...
        seen.append("turn free" if turn_free(db_path) else "turn held")  # ...another import waits

    # A clock that moves one "second" per reading: every window is over, so it pauses each time.
    pacer = Pacer(batch=100, adaptive=False, window=0.3, pause=0.2, max_pauses=1, sleep=sleep,
                  clock=lambda: float(next(ticks)))
    rows = "".join(f"u{i},u{i}@example.com,,,,,,,\n" for i in range(1000))
    result = importer.run_import(ctx, io.BytesIO((HEADER + rows).encode()), name="u.csv", pacer=pacer, workers=1)
    assert result.added == 1000
    assert seen and set(seen) == {"turn held"}
    conn = connect_db(db_path)
    events = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'user.import'").fetchone()[0]
    assert events == 10                      # ten transactions of 100 rows, not one of 1,000
    assert turn_free(db_path)                # after the import the turn is free again


def test_the_turn_is_given_after_each_pause(store, db_path, config_path, monkeypatch):
    from b24recover.store import imports as import_store

    ctx = Ctx(store=open_store(db_path), settings=load_settings(str(config_path), str(db_path)),
              clock=FixedClock(), actor="test")
    log = []
    ticks = (i / 10 for i in range(10**7))  # 0.1 s per reading
    pacer = Pacer(batch=50, adaptive=False, window=0.3, pause=0.2, max_pauses=1, sleep=lambda s: log.append("pause"),
                  clock=lambda: float(next(ticks)))
    take, give = import_store.ImportTurn.take, import_store.ImportTurn.give
    monkeypatch.setattr(import_store.ImportTurn, "take", lambda self: (log.append("take"), take(self))[1])
    monkeypatch.setattr(import_store.ImportTurn, "give", lambda self: (log.append("give"), give(self))[1])
    rows = "".join(f"v{i},,,,,,,,\n" for i in range(1000))
    importer.run_import(ctx, io.BytesIO((HEADER + rows).encode()), name="v.csv", pacer=pacer, workers=1)
    # Every pause is followed by giving the turn away before the next transaction takes it.
    pattern = [e for e in log if e in ("pause", "give", "take")]
    assert pattern.count("pause") >= 3
    for at, event in enumerate(pattern):
        if event == "pause":
            assert pattern[at + 1] == "give", pattern
