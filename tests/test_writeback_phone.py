"""Write-backs of the sign-in phone (b_user_phone_auth) and of a social-only account's first
password (SPEC §6), on real MariaDB (utf8mb4 and cp1251) and PostgreSQL portal databases.

Checked independently of the code under test: plain SELECTs on the portal's tables, Bitrix's own
password sign-in lookup (LOGIN with an empty EXTERNAL_AUTH_ID, CUser::LoginInternal) written out
here, and passlib's sha512_crypt over the charset's bytes.
"""

from __future__ import annotations


from conftest import connect_db
from passlib.hash import sha512_crypt

from test_writeback_portal import (NEW_PASSWORD, add, b_user, configure, count, portal, refused_port,  # noqa: F401
                                   server_db, synced)
from tokenhelp import last_code, last_link, link_parts

PHONE = "+79161112233"
OTHER_PHONE = "+79162223344"


def phone_rows(db, user_id: int) -> list[tuple]:
    return db.query("SELECT PHONE_NUMBER, CONFIRMED FROM b_user_phone_auth WHERE USER_ID = %s", (user_id,))


def writes(db_path) -> int:
    return connect_db(db_path).execute("SELECT count(*) FROM portal_writes").fetchone()[0]


def test_confirmed_link_phone_writes_a_confirmed_row_update_replaces_it_and_clear_deletes_it(cli, portal, synced,
                                                                                            db_path):
    pid = synced
    assert cli("link", "ivan", "--phone", PHONE).exit_code == 0
    assert phone_rows(portal, pid) == []  # pending: nothing written yet
    done = cli("redeem", "ivan", "--control-string-stdin", "--password-stdin",
               input=f"{last_code(db_path)}\n{NEW_PASSWORD}\n")
    assert done.exit_code == 0, done.stderr
    assert phone_rows(portal, pid) == [(PHONE, "Y")]
    assert sha512_crypt.verify(NEW_PASSWORD.encode(portal.encoding), b_user(portal, pid)["PASSWORD"])
    # An operator's number: Bitrix's own user form leaves it unconfirmed.
    assert cli("user", "update", "ivan", "--phone", OTHER_PHONE).exit_code == 0
    assert phone_rows(portal, pid) == [(OTHER_PHONE, "N")]
    assert cli("user", "update", "ivan", "--clear-phone").exit_code == 0
    assert phone_rows(portal, pid) == []
    assert cli("portal", "status", "--json").json["failed"] == 0
    assert cli("portal", "sync", "--full", "--json").json["updated"] == 0  # our writes are not the portal's


def test_user_update_email_writes_email(cli, portal, synced):
    assert cli("user", "update", "ivan", "--email", "ivan.new@example.com").exit_code == 0
    assert b_user(portal, synced)["EMAIL"] == "ivan.new@example.com"


def test_a_number_another_portal_user_holds_is_refused_before_any_change(cli, portal, synced, db_path):
    pid = synced
    other = add(portal, "olga")  # not synced: only the portal knows her number
    portal.execute("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES (%s, %s, 'Y')",
                   (other, PHONE))
    refused = cli("user", "update", "ivan", "--phone", PHONE, "--json")
    assert refused.exit_code == 4, refused.stderr
    assert refused.error["code"] == "conflict"
    assert f"user ID {other} already has the sign-in number {PHONE}" in refused.error["message"]
    linked = cli("link", "ivan", "--phone", PHONE, "--json")
    assert linked.exit_code == 4 and linked.error["code"] == "conflict"
    assert cli("user", "show", "ivan", "--json").json["phone"] is None
    assert phone_rows(portal, pid) == [] and phone_rows(portal, other) == [(PHONE, "Y")]
    assert writes(db_path) == 0
    # Taken between the link and its code: the redemption is refused and uses nothing up.
    assert cli("link", "ivan", "--phone", OTHER_PHONE).exit_code == 0
    code = last_code(db_path)
    portal.execute("UPDATE b_user_phone_auth SET PHONE_NUMBER = %s WHERE USER_ID = %s", (OTHER_PHONE, other))
    redeemed = cli("redeem", "ivan", "--control-string-stdin", "--password-stdin", "--json",
                   input=f"{code}\n{NEW_PASSWORD}\n")
    assert redeemed.exit_code == 4 and redeemed.error["code"] == "conflict", redeemed.stderr
    assert f"user ID {other} already has the sign-in number {OTHER_PHONE}" in redeemed.error["message"]
    assert cli("token", "list", "ivan", "--json").json["control_strings"][0]["state"] == "active"
    assert cli("user", "show", "ivan", "--json").json["phone"] is None
    assert phone_rows(portal, pid) == [] and writes(db_path) == 0


def test_a_number_taken_while_queued_fails_with_the_reason_not_a_driver_error(cli, portal, synced, config_path,
                                                                              db_path):
    pid = synced
    configure(config_path, portal, dsn=portal.dsn.replace(f":{portal.port}/", f":{refused_port()}/"))
    queued = cli("user", "update", "ivan", "--phone", PHONE, "--json")
    assert queued.exit_code == 9 and queued.error["code"] == "portal_write_failed"
    other = add(portal, "olga")
    portal.execute("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES (%s, %s, 'Y')",
                   (other, PHONE))
    configure(config_path, portal)
    pushed = cli("portal", "push", "--json")
    assert pushed.exit_code == 9 and pushed.error["code"] == "portal_write_failed"
    [(error,)] = connect_db(db_path).execute("SELECT error FROM portal_writes WHERE status = 'failed'").fetchall()
    assert f"user ID {other} already has the sign-in number {PHONE}" in error
    assert "duplicate" not in error.lower()
    assert phone_rows(portal, pid) == [] and phone_rows(portal, other) == [(PHONE, "Y")]
    # Resolved in the portal: the next push applies it.
    portal.execute("DELETE FROM b_user_phone_auth WHERE USER_ID = %s", (other,))
    assert cli("portal", "push", "--json").exit_code == 0
    assert phone_rows(portal, pid) == [(PHONE, "N")]


def social_only(db, login: str = "VK_48151699") -> int:
    pid = add(db, login, EXTERNAL_AUTH_ID="socservices", NAME="Павел")
    db.execute("INSERT INTO b_socialservices_user (LOGIN, EXTERNAL_AUTH_ID, USER_ID, XML_ID) VALUES (%s, %s, %s, %s)",
               (login, "VKontakte", pid, "48151699"))
    return pid


def bitrix_sign_in_row(db, login: str) -> list[tuple]:
    """The row Bitrix's password sign-in would check: this LOGIN among internal accounts."""
    return db.query("SELECT ID, PASSWORD FROM b_user WHERE LOGIN = %s AND (EXTERNAL_AUTH_ID IS NULL OR"
                    " EXTERNAL_AUTH_ID = '')", (login,))


def test_a_social_only_account_gets_its_first_password_through_a_confirmed_link(cli, store, config_path, portal,
                                                                                db_path):
    pid = social_only(portal)
    configure(config_path, portal)
    assert cli("portal", "sync", "--json").json["added"] == 1
    assert bitrix_sign_in_row(portal, "VK_48151699") == []  # no password sign-in yet
    assert cli("link", "VK_48151699", "--email", "pavel@example.ru").exit_code == 0
    _, control_string = link_parts(last_link(db_path))
    done = cli("redeem", "VK_48151699", "--control-string-stdin", "--password-stdin",
               input=f"{control_string}\n{NEW_PASSWORD}\n")
    assert done.exit_code == 0, done.stderr
    [(found, stored)] = bitrix_sign_in_row(portal, "VK_48151699")
    assert found == pid and sha512_crypt.verify(NEW_PASSWORD.encode(portal.encoding), stored)
    row = portal.query("SELECT EXTERNAL_AUTH_ID, EMAIL FROM b_user WHERE ID = %s", (pid,))[0]
    assert row == ("", "pavel@example.ru")
    # The social sign-in keeps its b_socialservices_user row.
    assert portal.query("SELECT EXTERNAL_AUTH_ID, XML_ID FROM b_socialservices_user WHERE USER_ID = %s",
                        (pid,)) == [("VKontakte", "48151699")]
    assert count(portal, "b_user_password", pid) == 1
    shown = cli("user", "show", "VK_48151699", "--json").json
    assert shown["has_password"] is True and shown["social"] == ["vkontakte"]
    assert cli("portal", "sync", "--full", "--json").json["updated"] == 0


def test_an_internal_namesake_refuses_the_first_password_before_anything_is_used(cli, store, config_path, portal,
                                                                                 db_path):
    pid = social_only(portal)
    configure(config_path, portal)
    assert cli("portal", "sync", "--json").json["added"] == 1
    assert cli("link", "VK_48151699", "--email", "pavel@example.ru").exit_code == 0
    _, control_string = link_parts(last_link(db_path))
    namesake = add(portal, "VK_48151699")  # an internal account with the same login appears
    done = cli("redeem", "VK_48151699", "--control-string-stdin", "--password-stdin", "--json",
               input=f"{control_string}\n{NEW_PASSWORD}\n")
    assert done.exit_code == 4, done.stderr
    assert done.error["code"] == "conflict"
    assert f"internal user ID {namesake} already has this login" in done.error["message"]
    assert portal.query("SELECT EXTERNAL_AUTH_ID FROM b_user WHERE ID = %s", (pid,)) == [("socservices",)]
    checked = cli("token", "check", "VK_48151699", "--control-string-stdin", "--json", input=control_string + "\n")
    assert checked.json["state"] == "active"  # nothing was used up
    assert cli("user", "show", "VK_48151699", "--json").json["has_password"] is False
    relinked = cli("link", "VK_48151699", "--email", "pavel2@example.ru", "--json")
    assert relinked.exit_code == 4 and relinked.error["code"] == "conflict"


def test_dry_run_shows_the_phone_and_first_password_statements_and_writes_nothing(cli, portal, synced, db_path):
    pid = synced
    before = (b_user(portal, pid), phone_rows(portal, pid))
    shown = cli("user", "update", "ivan", "--phone", PHONE, "--email", "x@example.com", "--dry-run", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json["statements"][-2:] == [
        f"DELETE FROM b_user_phone_auth WHERE USER_ID = {pid}",
        f"INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES ({pid}, '{PHONE}', 'N')"]
    assert "UPDATE b_user SET EMAIL = 'x@example.com'" in shown.json["statements"][0]
    cleared = cli("user", "update", "ivan", "--clear-phone", "--dry-run")
    assert f"DELETE FROM b_user_phone_auth WHERE USER_ID = {pid};" in cleared.stdout
    social = social_only(portal)
    assert cli("portal", "sync", "--json").exit_code == 0
    reset = cli("reset", "VK_48151699", "--dry-run", "--json")
    assert reset.json["portal_id"] == social
    assert (f"UPDATE b_user SET EXTERNAL_AUTH_ID = '' WHERE ID = {social} AND EXTERNAL_AUTH_ID = 'socservices'"
            in reset.json["statements"])
    assert (b_user(portal, pid), phone_rows(portal, pid)) == before
    assert writes(db_path) == 0
    assert cli("user", "show", "ivan", "--json").json["phone"] is None
