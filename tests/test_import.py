"""`user import`: csv, jsonl and Bitrix b_user files; bad rows by line; conflicts; dry runs;
stdin; imported Bitrix hashes; whole batches only after a SIGKILL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, add_user, connect_db
from hypothesis import given, settings
from hypothesis import strategies as st

from b24recover.clock import FixedClock
from b24recover.config import load_settings
from b24recover.services import identifiers as ids
from b24recover.services import importer
from b24recover.services.context import Ctx
from b24recover.services.passwords import verify_password
from b24recover.store.db import open_store

EXAMPLES = ROOT / "examples"
HEADER = "login,email,phone,name,last_name,lang,password_hash,social,blocked\n"
# The clear-text passwords behind the hashes in examples/users.csv and examples/b_user.csv.
EXAMPLE_PASSWORDS = {
    "anna.ivanova": ("sha512-crypt", "Rain-over-Kazan-2019"),
    "j.mueller": ("md5-salted", "Sommerwiese!42"),
    "giulia.rossi": ("md5", "pizzamargherita"),
    "olga.smirnova": ("sha512-crypt", "Белые ночи 1703"),
    "peter.smith": ("md5-salted", "golden gate 1937"),
    "sergey.kuznetsov": ("md5", "hockey4ever"),
    "joao.silva": ("sha512-crypt", "Saudade-no-Rio-22"),
    "admin": ("sha512-crypt", "Kremlin-Admin-1147"),
    "m.volkova": ("md5-salted", "welcome2010"),
    "k.sokolov": ("md5", "password1"),
}


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def db(db_path):
    return connect_db(db_path, rows_by_name=True)


def logins(db_path) -> list[str]:
    with db(db_path) as conn:
        return [r[0] for r in conn.execute("SELECT login FROM users ORDER BY login_key")]


def show(cli, login: str) -> dict:
    r = cli("user", "show", login, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json


def imported(cli, path: str, *args: str, exit_code: int = 0, input=None) -> dict:
    r = cli("user", "import", path, "--json", *args, input=input)
    assert r.exit_code == exit_code, (r.stdout, r.stderr)
    return r.json


def bad_by_line(summary: dict) -> dict[int, dict]:
    return {b["line"]: b for b in summary["bad"]}


# ---- formats -------------------------------------------------------------------------------

def test_example_csv(store, db_path):
    s = imported(store, str(EXAMPLES / "users.csv"))
    assert (s["read"], s["added"], s["updated"], s["skipped"], s["bad"], s["dry_run"], s["format"]) == \
        (12, 12, 0, 0, [], False, "csv")
    anna = show(store, "anna.ivanova")
    assert anna["email"] == "Anna.Ivanova@example.ru"   # the domain is normalised, the mailbox kept
    assert anna["phone"] == "+79123456789"              # a local Russian spelling
    assert (anna["name"], anna["last_name"], anna["lang"]) == ("Анна", "Иванова", "ru")
    assert show(store, "j.mueller")["phone"] == "+4915123456789"
    assert show(store, "olga.smirnova")["social"] == ["google"]
    assert show(store, "sergey.kuznetsov")["state"] == "blocked"
    assert show(store, "hans.weber")["state"] == "active"   # blocked = "no"
    # No hash and no social identity: no password; such a person recovers by control string.
    assert show(store, "marie.dubois")["has_password"] is False
    social_only = store("user", "list", "--social-only", "--json").json["accounts"]
    assert [a["login"] for a in social_only] == ["vk_48151623"]
    assert [a["login"] for a in store("user", "list", "--blocked", "--json").json["accounts"]] == ["sergey.kuznetsov"]


def test_imported_hashes_are_kept_and_recognised(store, db_path):
    imported(store, str(EXAMPLES / "users.csv"))
    imported(store, str(EXAMPLES / "b_user.csv"))
    with db(db_path) as conn:
        stored = dict(conn.execute("SELECT login, password_hash FROM users").fetchall())
    for login, (scheme, password) in EXAMPLE_PASSWORDS.items():
        assert show(store, login)["password_scheme"] == scheme, login
        assert show(store, login)["legacy_hash"] is True
        assert verify_password(password, stored[login]), login
        assert not verify_password(password + "x", stored[login]), login
    salted = stored["j.mueller"]
    assert salted[8:] == hashlib.md5((salted[:8] + "Sommerwiese!42").encode()).hexdigest()


@pytest.mark.parametrize("login", ["anna.ivanova", "j.mueller", "giulia.rossi"])
def test_imported_hash_signs_in_and_is_upgraded_by_passwd(store, login):
    imported(store, str(EXAMPLES / "users.csv"))
    scheme, password = EXAMPLE_PASSWORDS[login]
    wrong = store("passwd", login, "--password-stdin", "--json", input="not-the-password\nAnother-long-pass-99\n")
    assert wrong.exit_code == 6
    r = store("passwd", login, "--password-stdin", "--json", input=f"{password}\nAnother-long-pass-99\n")
    assert r.exit_code == 0, r.stderr
    assert show(store, login)["password_scheme"] == "bcrypt-sha256"


def test_example_bitrix_export(store, db_path):
    s = imported(store, str(EXAMPLES / "b_user.csv"))   # detected by its header; ';' sniffed
    assert (s["format"], s["read"], s["added"], s["bad"]) == ("bitrix", 5, 5, [])
    vk = show(store, "VK_48151699")
    assert vk["has_password"] is False and vk["password_scheme"] is None   # PASSWORD ignored
    assert vk["social_identities"] == [{"provider": "socservices", "subject": "VK_48151699"}]
    social_only = store("user", "list", "--social-only", "--json").json["accounts"]
    assert [a["login"] for a in social_only] == ["VK_48151699"]
    assert show(store, "k.sokolov")["state"] == "blocked"     # ACTIVE=N
    assert show(store, "l.santos")["state"] == "blocked"      # BLOCKED=Y
    assert show(store, "admin")["state"] == "active"
    assert show(store, "l.santos")["lang"] == "pt"            # Bitrix "br"
    assert show(store, "k.sokolov")["lang"] is None           # "ua": the default language
    assert show(store, "m.volkova")["phone"] == "+79121112233"


def test_bitrix_comma_delimited_with_forced_format(store, tmp_path):
    path = write(tmp_path, "export.txt",
                 "LOGIN,EMAIL,PERSONAL_PHONE,NAME,LAST_NAME,ACTIVE,EXTERNAL_AUTH_ID,PASSWORD,LANGUAGE_ID,XML_ID\n"
                 "fb_100042,,,Eva,Lind,Y,socservices,,en,x1\n"
                 "eva.lind,eva@example.se,+46 70 123 45 67,Eva,Lind,Y,,5f4dcc3b5aa765d61d8327deb882cf99,de,x2\n"
                 "bad.flag,,,A,B,maybe,,,en,x3\n")
    s = imported(store, path, "--format", "bitrix", exit_code=5)
    assert (s["added"], s["format"]) == (2, "bitrix")
    assert bad_by_line(s)[4]["reason"] == "ACTIVE must be 1/0, true/false or Y/N"
    assert show(store, "fb_100042")["social"] == ["socservices"]
    assert show(store, "eva.lind")["password_scheme"] == "md5"


def test_jsonl(store, tmp_path, db_path):
    lines = [
        {"login": "kim", "email": "kim@example.com", "phone": "+49 151 11112222", "lang": "de",
         "social": ["github:77", "gitlab:kim"], "blocked": True},
        {"login": "lee", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99", "blocked": 0},
        {"login": "mo", "password": "hunter2"},
        {"login": "nu", "nickname": "x"},
        ["not", "an", "object"],
    ]
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n{broken\n"
    s = imported(store, write(tmp_path, "people.jsonl", text), exit_code=5)
    assert (s["format"], s["read"], s["added"]) == ("jsonl", 6, 2)
    bad = bad_by_line(s)
    assert "clear-text" in bad[3]["reason"] and bad[3]["login"] == "mo"
    assert "hunter2" not in json.dumps(s)
    assert "nickname" in bad[4]["reason"]
    assert "not a JSON object" in bad[5]["reason"]
    assert "not valid JSON" in bad[7]["reason"]   # line 6 is blank: skipped, not counted
    kim = show(store, "kim")
    assert (kim["state"], kim["social"], kim["has_password"]) == ("blocked", ["github", "gitlab"], False)
    assert show(store, "lee")["password_scheme"] == "md5"


def test_stdin_and_semicolons(store, db_path):
    data = ("\ufefflogin;email;name\nruth;ruth@example.org;Ruth\nsam;sam@example.org;Sam\n").encode()
    s = imported(store, "-", input=data)
    assert (s["format"], s["added"]) == ("csv", 2)   # a BOM and ';' as Excel writes them
    assert logins(db_path) == ["ruth", "sam"]
    s = imported(store, "-", "--format", "jsonl", input=b'{"login": "tom"}\n')
    assert s["added"] == 1


# ---- bad rows ------------------------------------------------------------------------------

def test_bad_rows_reported_by_line_good_rows_kept(store, tmp_path, db_path):
    rows = [
        b"good1,good1@example.com,+7 912 100-00-01,A,,,,,",                    # 2
        b"badmail,not-an-address,,B,,,,,",                                      # 3
        b"badphone,,12,C,,,,,",                                                 # 4
        b"nul\x00byte,,,D,,,,,",                                                # 5
        b"utf,\xff\xfeoops@example.com,,E,,,,,",                                # 6
        b",nologin@example.com,,F,,,,,",                                        # 7
        b"good2,GOOD1@example.com,,G,,,,,",                                     # 8: the email of line 2
        b"hash,,,H,,,not-a-hash,,",                                             # 9
        b"long,,,I" + b"x" * 70_000 + b",,,,,",                                 # 10
        b"fields,,,J",                                                          # 11
        b"good3,good3@example.com,8 (912) 100-00-03,L,,ru,,,1",                 # 12
    ]
    path = write(tmp_path, "users.csv", HEADER.encode() + b"\n".join(rows) + b"\n")
    r = store("user", "import", path, "--json")
    assert r.exit_code == 5
    assert r.error["code"] == "invalid_input"
    s = r.json
    bad = bad_by_line(s)
    assert sorted(bad) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert bad[3]["code"] == "invalid_email" and bad[3]["login"] == "badmail"
    assert bad[4]["code"] == "invalid_phone"
    assert "NUL" in bad[5]["reason"]
    assert "UTF-8" in bad[6]["reason"]
    assert "login" in bad[7]["reason"] and bad[7]["code"] == "invalid_input"
    assert bad[8]["code"] == "conflict" and bad[8]["reason"] == "the address is also on line 2 of this file"
    assert "recognised hash" in bad[9]["reason"]
    assert "64 KiB" in bad[10]["reason"]
    assert "the header has 9" in bad[11]["reason"]
    assert (s["read"], s["added"], s["bad_count"]) == (11, 2, 9)
    assert logins(db_path) == ["good1", "good3"]
    assert show(store, "good3")["state"] == "blocked"


def test_bad_rows_human_output_capped(store, tmp_path):
    rows = "".join(f"u{i},broken-{i},,,,,,,\n" for i in range(60))
    r = store("user", "import", write(tmp_path, "u.csv", HEADER + rows))
    assert r.exit_code == 5
    assert "line 2 (u0): 'broken-0' is not a valid email address" in r.stderr
    assert "line 51 (u49)" in r.stderr and "line 52 (u50)" not in r.stderr
    assert "... and 10 more bad rows" in r.stderr
    assert "bad 60" in r.stderr


def test_unclosed_quote_and_blank_lines(store, tmp_path, db_path):
    text = HEADER + "a,,,A,,,,,\n\n,,,,,,,,\n" + 'c,,,"C,,,,,\n' + "d,,,D,,,,,\n" * 3
    s = imported(store, write(tmp_path, "u.csv", text), exit_code=5)
    # The quote runs to the end of the file: one broken record, reported at the line it starts.
    assert [b["line"] for b in s["bad"]] == [5]
    assert s["read"] == 2   # blank lines (and rows of empty cells) are not rows
    assert logins(db_path) == ["a"]


def test_file_level_errors_change_nothing(store, tmp_path, db_path):
    r = store("user", "import", write(tmp_path, "p.csv", "login,password\nanna,secret\n"), "--json")
    assert r.exit_code == 5 and "hashes only" in r.error["message"]
    assert "secret" not in r.stderr + r.stdout
    r = store("user", "import", write(tmp_path, "u.csv", "login,mail,Department\nanna,a@b.c,IT\n"), "--json")
    assert r.exit_code == 5 and "'mail'" in r.error["message"] and "'Department'" in r.error["message"]
    r = store("user", "import", write(tmp_path, "n.csv", "email\na@example.com\n"), "--json")
    assert r.exit_code == 5 and "login" in r.error["message"]
    r = store("user", "import", write(tmp_path, "e.csv", ""), "--json")
    assert r.exit_code == 5 and "empty" in r.error["message"]
    r = store("user", "import", str(tmp_path / "missing.csv"), "--json")
    assert r.exit_code == 5 and "cannot read" in r.error["message"]
    r = store("user", "import", "-", "--format", "xml")
    assert r.exit_code == 2
    r = store("user", "import", "-", "--on-conflict", "merge")
    assert r.exit_code == 2
    assert logins(db_path) == []


# ---- conflicts -----------------------------------------------------------------------------

CONFLICTS = (
    "anna,anna.new@example.com,,Anna-Maria,,de,5f4dcc3b5aa765d61d8327deb882cf99,,\n"   # 2: login of anna
    "carl,bob@example.com,,Carl,,,,,\n"                                                 # 3: email of bob
    "dora,dora@example.com,,Dora,,,,,\n"                                                # 4: new
    "anna,,,Twice,,,,,\n"                                                               # 5: anna again
)


@pytest.fixture
def two_accounts(store):
    add_user(store, "anna", "--email", "anna@example.com", "--phone", "+7 912 200-00-01")
    add_user(store, "bob", "--email", "bob@example.com")
    return store


def test_on_conflict_fail(two_accounts, tmp_path, db_path):
    s = imported(two_accounts, write(tmp_path, "c.csv", HEADER + CONFLICTS), exit_code=5)
    bad = bad_by_line(s)
    assert sorted(bad) == [2, 3, 5] and {b["code"] for b in bad.values()} == {"conflict"}
    assert "'anna'" in bad[2]["reason"] and "'bob'" in bad[3]["reason"]
    assert (s["added"], s["skipped"], s["updated"]) == (1, 0, 0)
    assert logins(db_path) == ["anna", "bob", "dora"]
    assert show(two_accounts, "anna")["email"] == "anna@example.com"


def test_on_conflict_skip(two_accounts, tmp_path, db_path):
    s = imported(two_accounts, write(tmp_path, "c.csv", HEADER + CONFLICTS), "--on-conflict", "skip")
    assert (s["added"], s["skipped"], s["bad"]) == (1, 3, [])
    assert logins(db_path) == ["anna", "bob", "dora"]


def test_on_conflict_update(two_accounts, tmp_path, db_path):
    text = HEADER + CONFLICTS + "bob,anna.new@example.com,,,,,,,\n" + "bob,,+7 912 200-00-01,,,,,,\n"
    s = imported(two_accounts, write(tmp_path, "c.csv", text), "--on-conflict", "update", exit_code=5)
    bad = bad_by_line(s)
    # line 3: bob's email for a new login; line 5: anna twice in one file; line 6: the email line 2
    # just gave anna; line 7: anna's phone for bob. All still bad in update mode.
    assert sorted(bad) == [3, 5, 6, 7]
    assert "line 2" in bad[5]["reason"] and "line 2" in bad[6]["reason"]
    assert "'anna'" in bad[7]["reason"]
    assert (s["added"], s["updated"]) == (1, 1)
    anna = show(two_accounts, "anna")
    assert (anna["email"], anna["name"], anna["lang"]) == ("anna.new@example.com", "Anna-Maria", "de")
    assert anna["phone"] == "+79122000001"                  # empty cells leave values as they are
    assert anna["password_scheme"] == "bcrypt-sha256"       # profile fields only: the password stays
    assert show(two_accounts, "bob")["email"] == "bob@example.com"
    again = imported(two_accounts, write(tmp_path, "d.csv", HEADER + "anna,,,Anna-Maria,,,,,\n"),
                     "--on-conflict", "update")
    assert (again["updated"], again["unchanged"]) == (0, 1)


def test_update_revokes_control_strings_when_an_address_changes(two_accounts, tmp_path):
    for login in ("anna", "bob"):
        assert two_accounts("token", "issue", login, "--via", "none", "--json").exit_code == 0
    text = HEADER + "anna,anna.2@example.com,,,,,,,\nbob,,,Robert,,,,,\n"
    s = imported(two_accounts, write(tmp_path, "u.csv", text), "--on-conflict", "update")
    assert s["updated"] == 2

    def states(login):
        listing = two_accounts("token", "list", login, "--state", "all", "--json").json
        return [t["state"] for t in listing["control_strings"]]

    assert states("anna") == ["revoked"]   # Bitrix: a new email invalidates the control string
    assert states("bob") == ["active"]     # a new name does not


def test_duplicates_across_batches(store, tmp_path, db_path):
    n = importer.BATCH_ROWS + importer.BATCH_ROWS // 2   # the last two rows land in the second batch
    rows = [f"u{i},u{i}@example.com,,,,,,," for i in range(n)]
    rows.append("late,u3@example.com,,,,,,,")                    # the email of line 5
    rows.append("u7,,,,,,,,")                                     # the login of line 9
    path = write(tmp_path, "u.csv", HEADER + "\n".join(rows) + "\n")
    late, dup = n + 2, n + 3
    dry = imported(store, path, "--dry-run", exit_code=5)
    assert bad_by_line(dry)[late]["reason"] == "the address is also on line 5 of this file"
    assert bad_by_line(dry)[dup]["reason"] == "the login is also on line 9 of this file"
    real = imported(store, path, "--on-conflict", "update", exit_code=5)
    assert sorted(bad_by_line(real)) == [late, dup]
    assert "earlier row of this file" in bad_by_line(real)[dup]["reason"]
    assert real["added"] == dry["added"] == n and real["updated"] == 0


# ---- dry run, audit, batches ---------------------------------------------------------------

def test_dry_run_writes_nothing(two_accounts, tmp_path, db_path):
    with db(db_path) as conn:
        before = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    r = two_accounts("user", "import", write(tmp_path, "c.csv", HEADER + CONFLICTS + "erik,,bad,,,,,,\n"),
                     "--dry-run")
    assert r.exit_code == 5
    assert "Dry run, nothing was written" in r.stderr and "added 1" in r.stderr
    s = imported(two_accounts, str(EXAMPLES / "users.csv"), "--dry-run")
    assert (s["dry_run"], s["added"]) == (True, 12)
    assert logins(db_path) == ["anna", "bob"]
    with db(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == before
        assert conn.execute("SELECT count(*) FROM social_identities").fetchone()[0] == 0


def test_one_audit_event_per_batch(store, tmp_path, db_path):
    from b24recover.services.importer import BATCH_ROWS as B

    rows = "".join(f"user{i},user{i}@example.com,,,,,,,\n" for i in range(2 * B + B // 2))
    s = imported(store, write(tmp_path, "u.csv", HEADER + rows + "x,broken,,,,,,,\n"), exit_code=5)
    assert s["added"] == 2 * B + B // 2
    with db(db_path) as conn:
        events = conn.execute("SELECT action, login, details FROM audit_log ORDER BY id").fetchall()
    imports = [json.loads(e["details"]) for e in events if e["action"] == "user.import"]
    assert [e["action"] for e in events].count("user.add") == 0
    # One event per transaction (sized by time): consecutive line ranges that cover the file.
    assert imports[0]["first_line"] == 2 and imports[-1]["last_line"] == 2 * B + B // 2 + 2
    assert all(a["last_line"] + 1 == b["first_line"] for a, b in zip(imports, imports[1:]))
    assert sum(e["added"] for e in imports) == 2 * B + B // 2 and sum(e["bad"] for e in imports) == 1
    assert all(e["login"] is None for e in events if e["action"] == "user.import")


def _ctx(db_path, config_path) -> Ctx:
    return Ctx(store=open_store(db_path), settings=load_settings(str(config_path), str(db_path)),
               clock=FixedClock(), actor="test")


def test_helper_processes_give_the_same_result(store, tmp_path, db_path, config_path):
    rows = [f"p{i},p{i}@example.com,8 (912) 3{i:02d}-00-00,Имя{i},,ru,,," for i in range(30)]
    rows[7] = "p7,bad@,,,,,,,"
    rows[12] = "p12,,+7 1,,,,,,"
    rows[20] = "p3,,,,,,,,"
    data = (HEADER + "\n".join(rows) + "\n").encode()
    results, seen = [], []
    for workers, parallel_after in ((1, 99), (2, 0)):
        ctx = _ctx(db_path, config_path)
        done = importer.run_import(ctx, io.BytesIO(data), name="x.csv", dry_run=True, workers=workers,
                                   parallel_after=parallel_after, progress=seen.append)
        importer_bad = [(b["line"], b["code"]) for b in done.bad]
        results.append((done.read, done.added, importer_bad))
        ctx.store.close()
    assert results[0] == results[1] == (30, 27, [(9, "invalid_email"), (14, "invalid_phone"), (22, "conflict")])
    assert seen[-1] == len(data)


def test_progress_callback_reports_bytes(store, tmp_path, db_path, config_path):
    data = (HEADER + "".join(f"q{i},,,,,,,,\n" for i in range(2 * importer.BATCH_ROWS + 100))).encode()
    seen: list[int] = []
    importer.run_import(_ctx(db_path, config_path), io.BytesIO(data), progress=seen.append)
    assert len(seen) == 3 and seen == sorted(seen) and seen[-1] == len(data)


@pytest.mark.parametrize("address", [
    "anna@example.com", "Anna.Ivanova@Example.RU", "first.last+tag@sub.example.co.uk", "postmaster@example.com",
    "Info@Example.com", "o'neil@example.ie", "user@xn--80ak6aa92e.com", "ольга@пример.рф", "a@b", "a..b@example.com",
    ".a@example.com", "a@-example.com", "a@example..com", "a@localhost", "a@example.test", "\"quoted\"@example.com",
    "a b@example.com", "a@exa mple.com", "Name <a@example.com>", "a@example.com.", "a@123.123",
    "a@" + "x" * 64 + ".com",
    ("l" * 70) + "@example.com", "x@" + ".".join(["abcdefghij"] * 24) + ".com",
])
def test_fast_email_path_matches_identifiers(address):
    def outcome(fn):
        try:
            return fn(address)
        except Exception as exc:  # noqa: BLE001 - the error code is what is compared
            return getattr(exc, "code", type(exc).__name__)

    assert outcome(importer.normalize_email) == outcome(ids.normalize_email)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.emails(), st.from_regex(r"[A-Za-z0-9._%+'-]{1,20}@[A-Za-z0-9.-]{1,30}", fullmatch=True)))
def test_fast_email_path_matches_identifiers_property(address):
    test_fast_email_path_matches_identifiers(address)


@pytest.mark.parametrize("region", ["RU", "DE", "US", "IT"])
@pytest.mark.parametrize("number", [
    "8 (912) 345-67-89", "+7 912 345 67 89", "89123456789", "+49 (0)30 901820", "0049 30 901820",
    "+1 (415) 555-0132", "+39 06 1234 5678", "+44 (0)20 7946 0958", "(912) 345-67-89", "+7.912.345.67.89",
    "12", "+7 1", "++7 912 345 67 89", "8 912 345 67 89 доб. 12", "+7\t912 345 67 89", " " * 70 + "89123456789",
])
def test_fast_phone_path_matches_identifiers(number, region):
    def outcome(fn):
        try:
            return fn(number, region)
        except Exception as exc:  # noqa: BLE001 - the error code and message are compared
            return getattr(exc, "code", type(exc).__name__), str(exc)

    assert outcome(importer.normalize_phone) == outcome(ids.normalize_phone)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\+?[0-9 ().\-/]{3,24}", fullmatch=True), st.sampled_from(["RU", "DE", "US", "BR"]))
def test_fast_phone_path_matches_identifiers_property(number, region):
    test_fast_phone_path_matches_identifiers(number, region)


# ---- a kill -9 in the middle ---------------------------------------------------------------

def _helpers_alive(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_sigkill_leaves_whole_batches_and_a_rerun_completes(store, tmp_path, db_path, config_path, proc):
    rows = "".join(f"k{i},k{i}@example.com,+7 913 {i // 10000:03d}-{i // 100 % 100:02d}-{i % 100:02d},K,,ru,"
                   f"{hashlib.md5(str(i).encode()).hexdigest()},,\n" for i in range(60_000))
    path = write(tmp_path, "big.csv", HEADER + rows)
    mark = f"B24RECOVER_TEST_MARK={uuid.uuid4()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env[mark.split("=")[0]] = mark.split("=")[1]
    # The rows come on stdin and the last third is never sent: the import cannot end on its own,
    # whatever the speed of the machine, so the kill always lands in the middle.
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "user", "import", "-", "--format", "csv"]
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    count = 0
    deadline = time.monotonic() + 120
    try:
        child.stdin.write((HEADER + rows[:rows.index("k40000,")]).encode())
        child.stdin.flush()
        while count == 0:
            assert child.poll() is None, "the import ended without the end of its input"
            assert time.monotonic() < deadline
            time.sleep(0.02)
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as conn:
                count = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        child.stdin.close()
    assert child.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while _helpers_alive(mark) and time.monotonic() < deadline:   # they read EOF and leave
        time.sleep(0.05)
    assert _helpers_alive(mark) == []
    with db(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        events = [json.loads(r[0]) for r in conn.execute(
            "SELECT details FROM audit_log WHERE action = 'user.import' ORDER BY id")]
    # Whole transactions only: every account kept is counted by the event of its transaction,
    # and the transactions end on line boundaries in order.
    assert 0 < kept < 40_000  # never more than it was sent
    assert kept == sum(e["added"] for e in events)
    assert events[-1]["last_line"] == kept + 1
    r = proc("user", "import", path, "--on-conflict", "skip", "--json", timeout=600)
    assert r.exit_code == 0, r.stderr
    assert (r.json["skipped"], r.json["added"], r.json["bad"]) == (kept, 60_000 - kept, [])
    with db(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 60_000
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_progress_bar_only_on_a_terminal(store, tmp_path, monkeypatch):
    from b24recover.cli import render

    path = write(tmp_path, "u.csv", HEADER + "".join(f"w{i},,,,,,,,\n" for i in range(1500)))
    plain = store("user", "import", path, "--dry-run")
    assert "importing" not in plain.stderr
    monkeypatch.setattr(render, "is_tty", lambda stream=None: stream is sys.stderr)
    shown = store("user", "import", path, "--dry-run", "--json", env={"FORCE_COLOR": "1", "TTY_INTERACTIVE": "1"})
    assert shown.exit_code == 0 and shown.json["added"] == 1500   # stdout stays pure JSON
    assert "importing" in shown.stderr


# The fast paths against what the contract says, not only against identifiers.py: the stored
# spelling, the lookup key (lower case), or the error code.
@pytest.mark.parametrize("address, expected", [
    ("anna@example.com", ("anna@example.com", "anna@example.com")),
    ("Anna.Ivanova@Example.RU", ("Anna.Ivanova@example.ru", "anna.ivanova@example.ru")),  # domain lowered
    ("ольга@пример.рф", ("ольга@пример.рф", "ольга@пример.рф")),
    ("a@b", "invalid_email"), ("a..b@example.com", "invalid_email"), ("a@localhost", "invalid_email"),
    ("Name <a@example.com>", "invalid_email"), ("a b@example.com", "invalid_email"),
    ("a@example.com.", "invalid_email"),
])
def test_fast_email_path_gives_the_contracts_answer(address, expected):
    for normalize in (importer.normalize_email, ids.normalize_email):
        if isinstance(expected, str):
            with pytest.raises(Exception) as caught:
                normalize(address)
            assert getattr(caught.value, "code", None) == expected
        else:
            assert normalize(address) == expected


@pytest.mark.parametrize("number, region, expected", [
    ("8 (912) 345-67-89", "RU", "+79123456789"), ("89123456789", "RU", "+79123456789"),
    ("(912) 345-67-89", "RU", "+79123456789"), ("+7 912 345 67 89", "DE", "+79123456789"),
    ("+49 (0)30 901820", "RU", "+4930901820"), ("0049 30 901820", "DE", "+4930901820"),
    ("+1 (415) 555-0132", "RU", "+14155550132"), ("+44 (0)20 7946 0958", "US", "+442079460958"),
    ("12", "RU", "invalid_phone"),
])
def test_fast_phone_path_gives_the_contracts_answer(number, region, expected):
    for normalize in (importer.normalize_phone, ids.normalize_phone):
        if expected.startswith("+"):
            assert normalize(number, region) == expected
        else:
            with pytest.raises(Exception) as caught:
                normalize(number, region)
            assert getattr(caught.value, "code", None) == expected
