"""Several nodes on one PostgreSQL store, as real processes that overlap (SPEC §5, §7, issue 12):
concurrent `outbox send` deliver each message once; a purge of 200,000 stale rows runs while
other nodes issue and redeem."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from smtp_server import Recorder, smtp_server
from test_outbox_claims import SENDERS, make_messages, message_ids, run_senders, write_config

from b24recover.clock import FixedClock
from conftest import ROOT, add_user, connect_db


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


class AllInData(Recorder):
    """Holds each delivery at DATA until `parties` senders are inside DATA at once, and records
    which senders held a claim at that instant (the store's lease column, read over PostgreSQL)."""

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
                owners = [r["lease_owner"] for r in outbox_rows(self.db_path) if r["status"] == "sending"]
                self.claimants_at_release = {int(o.split(".")[0]) for o in owners}
                self.released.set()
            else:
                try:
                    await asyncio.wait_for(self.released.wait(), 20)  # below the senders' smtp_timeout
                except asyncio.TimeoutError:  # never all at once: the overlap assertion fails
                    self.claimants_at_release = self.claimants_at_release or set()
                    self.released.set()
        return await super().handle_DATA(server, session, envelope)


def test_four_senders_on_postgresql_deliver_each_message_exactly_once(pg_only, store, tmp_path, db_path,
                                                                     config_path):
    make_messages(store, tmp_path, config_path, 120)
    assert Counter(r["status"] for r in outbox_rows(db_path)) == {"failed": 120}
    handler = AllInData(SENDERS, db_path)
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
