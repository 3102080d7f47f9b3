"""Write-backs to a real portal database (SPEC §6): MariaDB (utf8mb4 and cp1251) and PostgreSQL.

Every check of the portal's rows is independent of the code under test: passlib's
sha512_crypt.verify (and PHP's crypt() when php is installed) over the charset's bytes, plain
SELECTs on b_user and its family. No server: skipped with the reason (a failure under CI=true).
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import connect_db
from passlib.hash import sha512_crypt

from portal_db import PortalDB
from smtp_server import Recorder, smtp_server
from tokenhelp import LINK, body_of, last_link, link_parts, wait_until

OLD_PASSWORD = "Old-password-1"
NEW_PASSWORD = "brand new Пароль 42"
TABLES = ("b_user", "b_user_phone_auth", "b_socialservices_user", "b_group", "b_user_group", "b_option",
          "b_user_password", "b_user_stored_auth", "b_user_auth_action")


def bitrix6(password: str, encoding: str = "utf-8") -> str:
    return sha512_crypt.using(salt="AbCdEfGh12345678", rounds=5000).hash(password.encode(encoding))


def php_accepts(password: str, stored: str, encoding: str) -> bool | None:
    """PHP's own crypt(), as Bitrix's Password::equals calls it; None without php."""
    php = shutil.which("php")
    if php is None:
        return None
    code = "$p = stream_get_contents(STDIN); echo crypt($p, $argv[1]) === $argv[1] ? 'yes' : 'no';"
    done = subprocess.run([php, "-r", code, stored], input=password.encode(encoding), capture_output=True, timeout=30)
    return done.stdout.strip() == b"yes"


@pytest.fixture(scope="module", params=["mariadb", "postgres", "mariadb-cp1251"])
def server_db(request):
    engine, _, charset = request.param.partition("-")
    db = PortalDB.create(engine, charset=charset or "utf8mb4")
    db.encoding = "cp1251" if charset == "cp1251" else "utf-8"
    yield db
    db.drop()


@pytest.fixture
def portal(server_db):
    server_db.empty(TABLES)
    return server_db


def add(db, login: str, **cols) -> int:
    return db.insert_user({"LOGIN": login, "PASSWORD": bitrix6(OLD_PASSWORD, db.encoding), "ACTIVE": "Y",
                           "BLOCKED": "N", "TIMESTAMP_X": "2025-03-01 10:00:00", **cols})


def remembered_sign_in(db, user_id: int) -> None:
    db.execute("INSERT INTO b_user_stored_auth (USER_ID, DATE_REG, LAST_AUTH, STORED_HASH) VALUES"
               " (%s, '2025-03-01 10:00:00', '2025-03-01 10:00:00', 'abcdef')", (user_id,))


def b_user(db, user_id: int) -> dict:
    cols = ("PASSWORD", "PASSWORD_EXPIRED", "LOGIN_ATTEMPTS", "CHECKWORD", "CHECKWORD_TIME", "BLOCKED", "EMAIL")
    row = db.query(f"SELECT {', '.join(cols)} FROM b_user WHERE ID = %s", (user_id,))[0]
    return dict(zip(cols, row))


def count(db, table: str, user_id: int, where: str = "") -> int:
    return int(db.query(f"SELECT COUNT(*) FROM {table} WHERE USER_ID = %s {where}", (user_id,))[0][0])


def configure(config_path, db, *, dsn: str | None = None, write: bool = True) -> None:
    charset = "windows-1251" if db.encoding == "cp1251" else "utf-8"
    text = config_path.read_text(encoding="utf-8").split("[portal]")[0]
    config_path.write_text(text + f'[portal]\ndsn = "{dsn or db.dsn}"\ncharset = "{charset}"\n'
                           f'write = {"true" if write else "false"}\n', encoding="utf-8")


@pytest.fixture
def synced(store, cli, config_path, portal):
    """ivan in the portal, read into the store, write-back on."""
    pid = add(portal, "ivan", EMAIL="ivan@example.com", LOGIN_ATTEMPTS=3, CHECKWORD="old-checkword")
    remembered_sign_in(portal, pid)
    remembered_sign_in(portal, pid)
    configure(config_path, portal)
    assert cli("portal", "sync", "--json").json["added"] == 1
    return pid


def refused_port() -> int:
    """A bound, never-listening port: connecting is refused, and no other process can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    refused_port.keep = sock  # kept open for the test's lifetime
    return sock.getsockname()[1]


def test_reset_writes_the_password_row_sessions_and_history(cli, portal, synced, db_path):
    pid = synced
    result = cli("reset", "ivan", "--password-stdin", "--json", input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.stderr
    row = b_user(portal, pid)
    stored = row["PASSWORD"]
    assert stored.startswith("$6$") and len(stored.split("$")[2]) == 16 and len(stored) > 100
    assert sha512_crypt.verify(NEW_PASSWORD.encode(portal.encoding), stored)
    assert not sha512_crypt.verify(OLD_PASSWORD.encode(portal.encoding), stored)
    assert php_accepts(NEW_PASSWORD, stored, portal.encoding) in (True, None)
    assert php_accepts(OLD_PASSWORD, stored, portal.encoding) in (False, None)
    assert row["PASSWORD_EXPIRED"] == "N" and row["LOGIN_ATTEMPTS"] == 0
    assert row["CHECKWORD"] != "old-checkword" and row["CHECKWORD"].startswith("$6$")
    assert count(portal, "b_user_stored_auth", pid) == 0
    assert count(portal, "b_user_auth_action", pid, "AND ACTION = 'logout' AND PRIORITY = 100") == 1
    history = portal.query("SELECT PASSWORD FROM b_user_password WHERE USER_ID = %s", (pid,))
    assert history == [(stored,)]
    # The store never held the clear password, and keeps no hash once applied.
    if isinstance(db_path, Path):  # the file and its WAL, whatever their pages hold
        raw = db_path.read_bytes() + (db_path.with_name(db_path.name + "-wal").read_bytes()
                                      if db_path.with_name(db_path.name + "-wal").exists() else b"")
        assert NEW_PASSWORD.encode() not in raw
    con = connect_db(db_path)
    assert not [line for line in con.iterdump() if NEW_PASSWORD in line]
    assert con.execute("SELECT status, payload FROM portal_writes").fetchall() == [("done", "{}")]
    # --temporary: PASSWORD_EXPIRED = 'Y'.
    assert cli("reset", "ivan", "--temporary", "--password-stdin", input="another new one 77\n").exit_code == 0
    assert b_user(portal, pid)["PASSWORD_EXPIRED"] == "Y"
    assert count(portal, "b_user_password", pid) == 2
    # Our own write is not a change by the portal: a sync afterwards changes nothing.
    assert cli("portal", "sync", "--full", "--json").json["updated"] == 0


def test_token_issue_writes_a_checkword_the_link_verifies(cli, portal, synced, db_path):
    pid = synced
    result = cli("token", "issue", "ivan", "--via", "email", "--json")
    assert result.exit_code == 0, result.stderr
    login, control_string = link_parts(last_link(db_path))
    row = b_user(portal, pid)
    assert login == "ivan"
    assert sha512_crypt.verify(control_string.encode(), row["CHECKWORD"])
    assert php_accepts(control_string, row["CHECKWORD"], "utf-8") in (True, None)
    db_now = portal.query("SELECT LOCALTIMESTAMP")[0][0]
    assert abs((db_now - row["CHECKWORD_TIME"]).total_seconds()) <= 1
    assert row["PASSWORD"] == bitrix6(OLD_PASSWORD, portal.encoding)  # nothing else written


class PortalAtDelivery(Recorder):
    """An SMTP server that reads the portal's CHECKWORD at the moment each message arrives."""

    def __init__(self, db, portal_id: int):
        super().__init__()
        self.db, self.portal_id, self.checkwords = db, portal_id, []

    async def handle_DATA(self, server, session, envelope):
        self.checkwords.append(b_user(self.db, self.portal_id)["CHECKWORD"])
        return await super().handle_DATA(server, session, envelope)


def outbox_statuses(db_path) -> list[str]:
    return [r[0] for r in connect_db(db_path).execute("SELECT status FROM outbox ORDER BY id")]


def test_token_request_in_a_process_writes_the_checkword_before_the_message_goes(proc, portal, synced,
                                                                                   config_path, db_path):
    """The request answers first and the detached process does the portal's work, but the
    message still leaves only once the portal holds the CHECKWORD its link carries."""
    with smtp_server(PortalAtDelivery(portal, synced)) as server:
        config_path.write_text(config_path.read_text() + f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\n'
                               f'smtp_port = {server.port}\nsmtp_timeout = "5s"\n')
        answered = proc("token", "request", "ivan@example.com", "--json")
        assert answered.exit_code == 0, answered.stderr
        assert answered.json == proc("token", "request", "nobody@example.com", "--json").json
        wait_until(lambda: outbox_statuses(db_path) == ["sent"], "the message was never delivered")
    message = email.message_from_bytes(server.messages[0][2], policy=email.policy.default)
    _, control_string = link_parts(LINK.search(body_of(message)).group(0))
    at_delivery = server.handler.checkwords[0]
    assert at_delivery != "old-checkword" and sha512_crypt.verify(control_string.encode(), at_delivery)
    assert b_user(portal, synced)["CHECKWORD"] == at_delivery


def test_token_request_in_a_process_with_the_portal_down_queues_the_checkword_for_push(proc, cli, portal, synced,
                                                                                       config_path, db_path):
    configure(config_path, portal, dsn=portal.dsn.replace(f":{portal.port}/", f":{refused_port()}/"))
    answered = proc("token", "request", "ivan", "--json")
    assert answered.exit_code == 0, answered.stderr
    con = connect_db(db_path)
    wait_until(lambda: con.execute("SELECT status FROM portal_writes").fetchall() == [("failed",)],
               "the checkword write was never tried")
    wait_until(lambda: outbox_statuses(db_path) == ["sent"], "the message was never delivered")
    assert b_user(portal, synced)["CHECKWORD"] == "old-checkword"
    configure(config_path, portal)
    pushed = cli("portal", "push", "--json")
    assert pushed.exit_code == 0 and pushed.json["done"] == 1, pushed.stderr
    _, control_string = link_parts(last_link(db_path))
    assert sha512_crypt.verify(control_string.encode(), b_user(portal, synced)["CHECKWORD"])


def test_block_and_unblock_write_blocked(cli, portal, synced):
    assert cli("user", "block", "ivan").exit_code == 0
    assert b_user(portal, synced)["BLOCKED"] == "Y"
    assert cli("user", "unblock", "ivan").exit_code == 0
    assert b_user(portal, synced)["BLOCKED"] == "N"


def test_write_off_writes_nothing(cli, portal, synced, config_path):
    configure(config_path, portal, write=False)
    before = b_user(portal, synced)
    assert cli("reset", "ivan", "--password-stdin", input=NEW_PASSWORD + "\n").exit_code == 0
    assert b_user(portal, synced) == before


def test_a_portal_down_after_commit_keeps_the_change_and_push_applies_it(cli, portal, synced, config_path, db_path):
    pid = synced
    dead = portal.dsn.replace(f":{portal.port}/", f":{refused_port()}/")
    configure(config_path, portal, dsn=dead)
    result = cli("reset", "ivan", "--password-stdin", "--json", input=NEW_PASSWORD + "\n")
    assert result.exit_code == 9, result.stderr
    assert result.error["code"] == "portal_write_failed"
    assert result.json["login"] == "ivan"  # the command's own output came first
    assert b_user(portal, pid)["PASSWORD"] == bitrix6(OLD_PASSWORD, portal.encoding)
    codes = [f["code"] for f in cli("diagnose", "ivan", "--json").json["findings"]]
    assert "portal_write_failed" in codes
    status = cli("portal", "status", "--json")
    assert status.json["failed"] == 1
    again = cli("portal", "push", "--json")
    assert again.exit_code == 9 and again.error["code"] == "portal_write_failed"
    configure(config_path, portal)
    pushed = cli("portal", "push", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    assert pushed.json["done"] == 1 and pushed.json["still_failed"] == 0
    assert sha512_crypt.verify(NEW_PASSWORD.encode(portal.encoding), b_user(portal, pid)["PASSWORD"])
    assert cli("portal", "push", "--json").json["done"] == 0  # applied once
    assert count(portal, "b_user_password", pid) == 1
    assert cli("portal", "status", "--json").json["failed"] == 0


def test_the_portal_overwriting_the_checkword_supersedes_the_link(cli, portal, synced, db_path):
    pid = synced
    assert cli("token", "issue", "ivan", "--via", "email").exit_code == 0
    _, control_string = link_parts(last_link(db_path))
    # The portal's own "Forgot password" writes its checkword.
    portal.execute("UPDATE b_user SET CHECKWORD = %s WHERE ID = %s", (bitrix6("portalsownword"), pid))
    checked = cli("token", "check", "ivan", "--control-string-stdin", "--json", input=control_string + "\n")
    assert checked.exit_code == 6 and checked.error["code"] == "control_string_superseded"
    codes = [f["code"] for f in cli("diagnose", "ivan", "--json").json["findings"]]
    assert "portal_superseded" in codes


def test_a_password_changed_in_the_portal_refreshes_and_revokes(cli, portal, synced, db_path):
    pid = synced
    assert cli("token", "issue", "ivan", "--via", "email").exit_code == 0
    _, control_string = link_parts(last_link(db_path))
    portal.execute("UPDATE b_user SET PASSWORD = %s, CHECKWORD = CHECKWORD WHERE ID = %s",
                   (bitrix6("changed by an admin 1", portal.encoding), pid))
    checked = cli("token", "check", "ivan", "--control-string-stdin", "--json", input=control_string + "\n")
    assert checked.exit_code == 6 and checked.error["code"] == "control_string_revoked"


def test_dry_run_prints_the_statements_masked_and_changes_nothing(cli, portal, synced, db_path):
    before = b_user(portal, synced)
    con = connect_db(db_path)
    audit_before = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    result = cli("reset", "ivan", "--temporary", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = result.json
    assert plan["dry_run"] is True and plan["portal_id"] == synced
    joined = "\n".join(plan["statements"])
    assert "UPDATE b_user SET PASSWORD = '$6$…' (masked), PASSWORD_EXPIRED = 'Y'" in joined
    assert "DELETE FROM b_user_stored_auth WHERE USER_ID = %d" % synced in joined
    assert "'logout'" in joined
    for args in (("token", "issue", "ivan", "--via", "email"), ("user", "block", "ivan"),
                 ("user", "update", "ivan", "--email", "new@example.com"), ("passwd", "ivan"),
                 ("redeem", "ivan")):
        shown = cli(*args, "--dry-run")
        assert shown.exit_code == 0, (args, shown.stderr)
        assert "UPDATE b_user SET" in shown.stdout, args
    assert b_user(portal, synced) == before
    assert con.execute("SELECT count(*) FROM portal_writes").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == audit_before
    assert con.execute("SELECT count(*) FROM control_strings").fetchone()[0] == 0


def test_dry_runs_of_request_link_and_add_change_nothing_and_tell_no_account_apart(cli, portal, synced, db_path):
    con = connect_db(db_path)
    tables = ("users", "control_strings", "outbox", "audit_log", "portal_writes", "pending_addresses")
    before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    portal_before = b_user(portal, synced)
    # token request: one plan for a known and an unknown identifier, the portal ID a placeholder.
    known = cli("token", "request", "ivan@example.com", "--dry-run", "--json")
    unknown = cli("token", "request", "nobody@example.com", "--dry-run", "--json")
    assert known.exit_code == unknown.exit_code == 0, known.stderr
    assert {**known.json, "identifier": None} == {**unknown.json, "identifier": None}
    assert known.json["identifier"] == "ivan@example.com"
    joined = "\n".join(known.json["statements"])
    assert "CHECKWORD = '$6$…' (masked)" in joined and "<portal ID>" in joined and str(synced) not in joined
    shown = cli("token", "request", "ivan", "--dry-run")
    assert shown.exit_code == 0 and "UPDATE b_user SET CHECKWORD" in shown.stdout and "would: " in shown.stdout
    # link: the checks of a real link, the CHECKWORD of the link it would send, the local steps.
    linked = cli("link", "ivan", "--email", "ivan.second@example.com", "--dry-run", "--json")
    assert linked.exit_code == 0, linked.stderr
    assert linked.json["portal_id"] == synced and "CHECKWORD = '$6$…' (masked)" in "\n".join(linked.json["statements"])
    assert any("pending" in step for step in linked.json["local"])
    assert cli("link", "nobody", "--email", "x@example.com", "--dry-run").exit_code == 3
    # user add: the account is b24recover's own, nothing for the portal; a taken login is refused.
    added = cli("user", "add", "boris", "--email", "boris@example.com", "--dry-run", "--json")
    assert added.exit_code == 0, added.stderr
    assert added.json["statements"] == [] and added.json["local"][0].startswith("add the account boris")
    assert cli("user", "add", "ivan", "--dry-run", "--json").error["code"] == "conflict"
    assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables} == before
    assert b_user(portal, synced) == portal_before


def test_revoke_and_purge_clear_only_our_checkword(cli, portal, synced, db_path, clock):
    assert cli("token", "issue", "ivan", "--via", "email").exit_code == 0
    assert b_user(portal, synced)["CHECKWORD"].startswith("$6$")
    assert cli("token", "revoke", "ivan").exit_code == 0
    assert b_user(portal, synced)["CHECKWORD"] is None  # the revoked link dies on the portal too
    clock.advance(3600)
    assert cli("token", "issue", "ivan", "--via", "email", "--force").exit_code == 0
    ours = b_user(portal, synced)["CHECKWORD"]
    clock.advance(40 * 86400)  # expired, and older than the retention
    purged = cli("audit", "tokens", "--purge", "--json")
    assert purged.exit_code == 0, purged.stderr
    assert purged.json["purged"] == 2
    assert ours is not None and b_user(portal, synced)["CHECKWORD"] is None


def test_a_confirmed_link_writes_the_email_and_the_password(cli, portal, synced, db_path):
    assert cli("link", "ivan", "--email", "ivan.second@example.com").exit_code == 0
    _, control_string = link_parts(last_link(db_path))
    done = cli("redeem", "ivan", "--control-string-stdin", "--password-stdin",
               input=f"{control_string}\n{NEW_PASSWORD}\n")
    assert done.exit_code == 0, done.stderr
    row = b_user(portal, synced)
    assert row["EMAIL"] == "ivan.second@example.com"
    assert sha512_crypt.verify(NEW_PASSWORD.encode(portal.encoding), row["PASSWORD"])
    assert not sha512_crypt.verify(control_string.encode(), row["CHECKWORD"])  # the used link dies


def test_portal_status_says_what_write_touches(cli, portal, synced):
    shown = cli("portal", "status")
    assert shown.exit_code == 0, shown.stderr
    assert "b_user_stored_auth: DELETE" in shown.stdout + shown.stderr
    assert set(cli("portal", "status", "--json").json["writes"]) == {"b_user", "b_user_password",
                                                                     "b_user_stored_auth", "b_user_auth_action",
                                                                     "b_user_phone_auth"}
