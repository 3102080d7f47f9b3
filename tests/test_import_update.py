"""`user import --on-conflict update` (issue 13, item 1): profile fields only unless
--update-passwords / --update-state; one audit event per changed account naming the fields;
a change of email/phone/state still revokes the control string."""

from __future__ import annotations

import json

from conftest import ROOT, add_user, connect_db

from b24recover.services.passwords import verify_password

EXAMPLES = ROOT / "examples"
OLD_PASSWORD = "Rain-over-Kazan-2019"  # behind anna.ivanova's $6$ hash in examples/users.csv


def db(db_path):
    return connect_db(db_path, rows_by_name=True)


def user(db_path, login):
    with db(db_path) as conn:
        return conn.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()


def updates(db_path):
    with db(db_path) as conn:
        rows = conn.execute("SELECT login, details FROM audit_log WHERE action = 'user.update' ORDER BY id").fetchall()
    return [(r["login"], json.loads(r["details"])) for r in rows]


def imported(cli, *args, exit_code=0):
    r = cli("user", "import", *args, "--json")
    assert r.exit_code == exit_code, (r.stdout, r.stderr)
    return r.json if r.stdout else None


def test_update_never_rolls_credentials_back(store, db_path):
    users_csv = str(EXAMPLES / "users.csv")
    imported(store, users_csv)
    r = store("reset", "anna.ivanova", "--generate", "--json")
    assert r.exit_code == 0, r.stderr
    new_password = r.json["password"]
    assert store("user", "unblock", "sergey.kuznetsov").exit_code == 0   # the file says blocked=1
    before = user(db_path, "anna.ivanova")["password_hash"]

    s = imported(store, users_csv, "--on-conflict", "update")
    assert s["updated"] == 0 and s["unchanged"] == 12
    anna = user(db_path, "anna.ivanova")
    assert anna["password_hash"] == before
    assert verify_password(new_password, anna["password_hash"])
    assert not verify_password(OLD_PASSWORD, anna["password_hash"])
    assert user(db_path, "sergey.kuznetsov")["blocked"] == 0
    assert updates(db_path) == []


def test_update_passwords_and_state_only_when_asked(store, db_path):
    users_csv = str(EXAMPLES / "users.csv")
    imported(store, users_csv)
    assert store("reset", "anna.ivanova", "--generate", "--json").exit_code == 0
    assert store("user", "unblock", "sergey.kuznetsov").exit_code == 0
    r = store("user", "import", users_csv, "--update-passwords")
    assert r.exit_code == 2            # the flags go with --on-conflict update

    s = imported(store, users_csv, "--on-conflict", "update", "--update-state")
    assert s["updated"] == 1
    assert user(db_path, "sergey.kuznetsov")["blocked"] == 1
    assert not verify_password(OLD_PASSWORD, user(db_path, "anna.ivanova")["password_hash"])
    assert updates(db_path)[-1] == ("sergey.kuznetsov", {"source": "import", "file": users_csv,
                                                          "fields": ["blocked"], "revoked": 0})

    s = imported(store, users_csv, "--on-conflict", "update", "--update-passwords")
    assert s["updated"] == 1
    assert verify_password(OLD_PASSWORD, user(db_path, "anna.ivanova")["password_hash"])
    login, details = updates(db_path)[-1]
    assert login == "anna.ivanova" and details["fields"] == ["password_hash"]
    assert "$6$" not in json.dumps(details)   # never the value of a secret


def test_one_event_per_changed_account_naming_the_fields(store, tmp_path, db_path):
    add_user(store, "anna", "--email", "anna@example.com", "--name", "Anna")
    add_user(store, "bob", "--email", "bob@example.com")
    add_user(store, "dora")
    path = tmp_path / "u.csv"
    path.write_text("login,email,phone,name,last_name,lang,password_hash,social,blocked\n"
                    "anna,anna.new@example.com,,Anna-Maria,Ivanova,de,,,1\n"
                    "bob,,+7 912 200-00-01,,,,,,\n"
                    "dora,,,,,,,,\n", encoding="utf-8")
    s = imported(store, str(path), "--on-conflict", "update")
    assert (s["updated"], s["unchanged"]) == (2, 1)
    events = dict(updates(db_path))
    assert set(events) == {"anna", "bob"}
    assert events["anna"]["fields"] == ["email", "lang", "last_name", "name"]   # not blocked: no --update-state
    assert events["bob"]["fields"] == ["phone"]
    assert user(db_path, "anna")["blocked"] == 0


def test_email_phone_and_state_changes_revoke_the_control_string(store, tmp_path, db_path):
    for login in ("anna", "bob", "carl", "dora"):
        add_user(store, login, "--email", f"{login}@example.com")
        assert store("token", "issue", login, "--via", "none", "--json").exit_code == 0
    path = tmp_path / "u.csv"
    path.write_text("login,email,phone,name,last_name,lang,password_hash,social,blocked\n"
                    "anna,anna2@example.com,,,,,,,\n"
                    "bob,,+7 912 200-00-02,,,,,,\n"
                    "carl,,,,,,,,1\n"
                    "dora,,,Dora,,,,,\n", encoding="utf-8")
    imported(store, str(path), "--on-conflict", "update", "--update-state")

    def state(login):
        listing = store("token", "list", login, "--state", "all", "--json").json["control_strings"]
        return [t["state"] for t in listing]

    assert state("anna") == ["revoked"] and state("bob") == ["revoked"] and state("carl") == ["revoked"]
    assert state("dora") == ["active"]            # a new name does not
    assert dict(updates(db_path))["carl"]["revoked"] == 1
