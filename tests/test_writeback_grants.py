"""The GRANTs docs/bitrix.md gives are enough, and exact: sync and every write-back run as a
database user holding only them, on real MariaDB and PostgreSQL servers."""

from __future__ import annotations

import re
import uuid

import pytest

from conftest import ROOT
from test_writeback_portal import TABLES, add, b_user, configure, count, remembered_sign_in

PASSWORD = "grant-test-Pw-1"


def grant_block(tag: str) -> list[str]:
    text = (ROOT / "docs" / "bitrix.md").read_text(encoding="utf-8")
    block = re.search(r"```sql\n-- " + tag + r"[^\n]*\n(.*?)```", text, re.S).group(1)
    return [line.rstrip(";") for line in block.splitlines() if line.strip() and not line.startswith("--")]


@pytest.fixture(params=["mariadb", "postgres"])
def limited(request):
    """A portal database, and a user holding exactly the documented grants on it."""
    from portal_db import PortalDB

    db = PortalDB.create(request.param)
    db.encoding = "utf-8"
    role = f"b24r_{uuid.uuid4().hex[:8]}"
    if db.engine == "mariadb":
        for sql in grant_block("mysql-grants"):
            db.execute(sql.replace("sitemanager.", f"{db.name}.").replace("'b24recover'@'10.0.0.%'", f"'{role}'@'%'")
                       .replace("'...'", f"'{PASSWORD}'"))
    else:
        for sql in grant_block("postgresql-grants"):
            db.execute(sql.replace("b24recover", role).replace("'...'", f"'{PASSWORD}'"))
    try:
        yield db, role
    finally:
        if db.engine == "mariadb":
            db.execute(f"DROP USER '{role}'@'%'")
            db.drop()
        else:
            db.drop()
            import psycopg2

            from portal_db import HOST, PG_PORT, PG_USER

            admin = psycopg2.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f"DROP ROLE IF EXISTS {role}")
            admin.close()


def test_the_documented_grants_suffice_for_sync_and_every_write_back(store, cli, config_path, limited, db_path,
                                                                     monkeypatch, clock):
    db, role = limited
    pid = add(db, "ivan", EMAIL="ivan@example.com")
    remembered_sign_in(db, pid)
    social = add(db, "VK_1", EXTERNAL_AUTH_ID="socservices")
    db.execute("INSERT INTO b_socialservices_user (LOGIN, EXTERNAL_AUTH_ID, USER_ID, XML_ID) VALUES ('VK_1', 'VKontakte',"
               " %s, '1')", (social,))
    monkeypatch.setenv("B24_PORTAL_PW", PASSWORD)
    configure(config_path, db, dsn=db.dsn.replace(f"//{db.user}@", f"//{role}@"))
    config_path.write_text(config_path.read_text(encoding="utf-8") + 'password_env = "B24_PORTAL_PW"\n', encoding="utf-8")
    synced = cli("portal", "sync", "--json")
    assert synced.exit_code == 0, synced.stderr
    assert synced.json["added"] == 2
    for args, stdin in ((("reset", "ivan", "--password-stdin"), "granted new password 9\n"),
                        (("reset", "VK_1", "--password-stdin"), "a first password here 8\n"),
                        (("user", "update", "ivan", "--phone", "+79161112233"), None),
                        (("user", "update", "ivan", "--phone", "+79162223344"), None),
                        (("token", "issue", "ivan", "--via", "email"), None),
                        (("token", "revoke", "ivan"), None),
                        (("user", "block", "ivan"), None), (("user", "unblock", "ivan"), None),
                        (("user", "update", "ivan", "--email", "ivan.new@example.com"), None)):
        done = cli(*args, input=stdin)
        assert done.exit_code == 0, (args, done.stderr)
        clock.advance(120)
    assert db.query("SELECT PHONE_NUMBER, CONFIRMED FROM b_user_phone_auth WHERE USER_ID = %s", (pid,)) == \
        [("+79162223344", "N")]
    assert db.query("SELECT EXTERNAL_AUTH_ID FROM b_user WHERE ID = %s", (social,)) == [("",)]
    row = b_user(db, pid)
    assert row["EMAIL"] == "ivan.new@example.com" and row["BLOCKED"] == "N" and row["CHECKWORD"] is None
    assert count(db, "b_user_stored_auth", pid) == 0 and count(db, "b_user_password", pid) == 1
    assert cli("portal", "status", "--json").json["failed"] == 0
    # And no more than that: a column outside the grants is refused to this user.
    if db.engine == "mariadb":
        import pymysql

        conn = pymysql.connect(host=db.host, port=db.port, user=role, password=PASSWORD, database=db.name)
        with pytest.raises(pymysql.err.OperationalError):
            with conn.cursor() as cur:
                cur.execute("UPDATE b_user SET NAME = 'x' WHERE ID = %s", (pid,))
    else:
        import psycopg2

        conn = psycopg2.connect(host=db.host, port=db.port, user=role, password=PASSWORD, dbname=db.name)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            with conn.cursor() as cur:
                cur.execute("UPDATE b_user SET name = 'x' WHERE id = %s", (pid,))
    conn.close()
