"""A message whose control string ends while it is being sent, and a sender that loses its
lease mid-send: nothing is lost, nothing is sent twice, and the store says what happened."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from smtp_server import Recorder, smtp_server

from b24recover.clock import FixedClock
from b24recover.store import outbox as outbox_store
from conftest import ROOT, add_user, connect_db
from test_outbox_claims import dead_port


@pytest.fixture
def clock():
    return FixedClock(int(time.time()))


def smtp_config(config_path, port: int) -> None:
    config_path.write_text(
        'portal_url = "https://portal.example.com"\n[hashing]\nbcrypt_rounds = 4\n'
        f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_timeout = "30s"\n',
        encoding="utf-8")


def only_row(db_path):
    conn = connect_db(db_path, rows_by_name=True)
    try:
        (row,) = conn.execute("SELECT * FROM outbox").fetchall()
        return row
    finally:
        conn.close()


class RevokeDuringData(Recorder):
    """While the sender waits for the answer to DATA, an operator revokes the control string
    (a real `token revoke` process); then the server accepts or refuses the message."""

    def __init__(self, db_path, config_path, reply: str):
        super().__init__()
        self.argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
                     "token", "revoke", "anna"]
        self.reply, self.revoked = reply, None

    async def handle_DATA(self, server, session, envelope):
        env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
        self.revoked = subprocess.run(self.argv, env=env, cwd=ROOT, capture_output=True, timeout=60).returncode
        await super().handle_DATA(server, session, envelope)
        return self.reply


def issue_failed_link(store, config_path) -> None:
    add_user(store, "anna", "--email", "anna@example.com")
    with dead_port() as port:
        smtp_config(config_path, port)
        assert store("token", "issue", "anna", "--via", "email").exit_code == 9


def test_revoked_while_being_sent_and_accepted_is_sent_once(store, db_path, config_path):
    issue_failed_link(store, config_path)
    with smtp_server(RevokeDuringData(db_path, config_path, "250 OK")) as server:
        smtp_config(config_path, server.port)
        r = store("outbox", "send", "--json")
        assert server.handler.revoked == 0
        assert r.exit_code == 0 and r.json["sent"] == 1
        assert store("outbox", "send", "--json").json["total"] == 0
    assert len(server.messages) == 1
    row = only_row(db_path)
    assert (row["status"], row["sealed"], row["lease_owner"]) == ("sent", None, None)


def test_revoked_while_being_sent_and_refused_is_cancelled_not_retried(store, db_path, config_path):
    issue_failed_link(store, config_path)
    with smtp_server(RevokeDuringData(db_path, config_path, "451 4.3.0 later")) as server:
        smtp_config(config_path, server.port)
        r = store("outbox", "send", "--json")
        assert server.handler.revoked == 0
        assert r.exit_code == 0 and r.json["cancelled"] == 1 and r.json["failed"] == 0
        assert store("outbox", "send", "--json").json["total"] == 0
    row = only_row(db_path)
    assert (row["status"], row["sealed"], row["lease_owner"]) == ("cancelled", None, None)
    assert "revoked" in row["error"] and "451" in row["error"]


class TakeOverDuringData(Recorder):
    """The sender overran its lease: while it waits for DATA's answer, a second sender claims
    the message (its lease has ended by the second sender's clock)."""

    def __init__(self, db_path):
        super().__init__()
        self.db_path = db_path

    async def handle_DATA(self, server, session, envelope):
        conn = connect_db(self.db_path)
        try:
            row = conn.execute("SELECT id, lease_until FROM outbox WHERE status = 'sending'").fetchone()
            assert outbox_store.claim(conn, row[0], owner="99.second", now=row[1], lease=120, host="h")
            conn.commit()
        finally:
            conn.close()
        return await super().handle_DATA(server, session, envelope)


def test_a_sender_that_lost_its_lease_leaves_the_message_to_the_new_claimant(store, db_path, config_path):
    issue_failed_link(store, config_path)
    with smtp_server(TakeOverDuringData(db_path)) as server:
        smtp_config(config_path, server.port)
        assert store("outbox", "send", "--json").json["sent"] == 1
    row = only_row(db_path)
    assert (row["status"], row["lease_owner"]) == ("sending", "99.second")
    events = store("audit", "log", "--action", "outbox.lease_lost", "--json").json["events"]
    assert len(events) == 1
    assert events[0]["details"]["message_id"] == row["message_id"]
    assert events[0]["details"]["recipient"] == "anna@example.com"
