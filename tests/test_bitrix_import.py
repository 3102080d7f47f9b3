"""`user import --format bitrix` and the Bitrix account semantics of SPEC §4 (issue 10 §1-2,
issue 13 items 13 and 15): export dialects, NULLs and escapes, encodings, internal / social-only
/ external accounts, sign-in and profile phones, repeated emails."""

from __future__ import annotations

import hashlib

import pytest
from conftest import connect_db
from passlib.hash import sha512_crypt

HEADER = ["ID", "LOGIN", "EMAIL", "PERSONAL_PHONE", "NAME", "LAST_NAME", "ACTIVE", "BLOCKED",
          "EXTERNAL_AUTH_ID", "PASSWORD", "LANGUAGE_ID", "PHONE_NUMBER", "XML_ID", "SOCIAL_PROVIDER"]
MD5_SALTED = "a;b,\\" + hashlib.md5(b"a;b,\\" + b"welcome2010").hexdigest()  # a salt with ; , and \


def crypt6(password: str, encoding: str = "utf-8") -> str:
    return sha512_crypt.using(salt="Ab3dE5fG7hJ9kL1m", rounds=5000).hash(password.encode(encoding))


def batch_escape(value) -> str:
    """How `mysql --batch` writes a value."""
    if value is None:
        return "NULL"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def outfile_escape(value, sep: str) -> str:
    """How INTO OUTFILE (ESCAPED BY '\\\\', no enclosure) writes a value."""
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace(sep, "\\" + sep).replace("\n", "\\\n").replace("\0", "\\0")


ROWS = [
    # ID LOGIN EMAIL PERSONAL_PHONE NAME LAST_NAME ACTIVE BLOCKED EXT PASSWORD LANG PHONE_NUMBER XML_ID PROVIDER
    ["1", "admin", "admin@portal.local", "+7 (343) 222-33-44", "Администратор", None, "Y", "N", None,
     crypt6("Kremlin-Admin-1147"), "ru", "+79120000001", None, None],
    ["2", "m.volkova", "office@example.ru", "+7 343 222-00-00", "Марина", "Вол\tкова", "Y", "N", "",
     MD5_SALTED, "ru", None, None, None],
    ["3", "k.sokolov", "office@example.ru", "+7 343 222-00-00", "Кирилл", "Соколов", "N", "N", None,
     None, "ua", None, None, None],
    ["4", "admin", "admin@corp.invalid", "доб. 123", "Admin", "LDAP", "Y", "N", "LDAP#1",
     "random-ignored", "en", None, None, None],
    ["5", "VK_48151699", None, None, "Павел", "Морозов", "Y", "N", "socservices", "x" * 40, "ru", None,
     "48151699", "VKontakte"],
    ["6", "bot.helper", None, None, "Bot", None, "Y", "N", "bot", None, "en", None, None, None],
]


def by_login(db_path):
    conn = connect_db(db_path, rows_by_name=True)
    rows = conn.execute("SELECT * FROM users ORDER BY id").fetchall()
    conn.close()
    return {(r["login"], r["external"]): r for r in rows}


def socials(db_path):
    with connect_db(db_path) as conn:
        return conn.execute("SELECT provider, subject FROM social_identities").fetchall()


def imported(cli, path, *args, exit_code=0):
    r = cli("user", "import", str(path), "--json", *args)
    assert r.exit_code == exit_code, (r.stdout, r.stderr)
    return r.json


@pytest.fixture
def repeat_emails(config_path):
    with open(config_path, "a", encoding="utf-8") as f:
        f.write("[accounts]\nunique_email = false\n")


def check_accounts(db_path):
    got = by_login(db_path)
    assert len(got) == 6
    admin = got[("admin", None)]
    assert (admin["email"], admin["phone"], admin["profile_phone"]) == \
        ("admin@portal.local", "+79120000001", "+7 (343) 222-33-44")   # SMS phone from b_user_phone_auth
    assert admin["portal_id"] == 1 and admin["password_hash"] == crypt6("Kremlin-Admin-1147")
    volkova = got[("m.volkova", None)]
    assert volkova["last_name"] == "Вол кова"          # a TAB in a name is cleaned, not refused
    assert volkova["password_hash"] == MD5_SALTED       # ; , \ in the salt survive
    assert volkova["phone"] == "+73432220000"           # the first holder of the office number...
    sokolov = got[("k.sokolov", None)]
    assert sokolov["phone"] is None and sokolov["profile_phone"] == "+7 343 222-00-00"  # ...shared: profile only
    assert sokolov["blocked"] == 1 and sokolov["email"] == "office@example.ru"
    ldap = got[("admin", "LDAP#1")]
    assert ldap["password_hash"] is None and ldap["profile_phone"] == "доб. 123" and ldap["phone"] is None
    assert ldap["email"] == "admin@corp.invalid"
    social = got[("VK_48151699", None)]
    assert social["password_hash"] is None and social["external"] is None
    assert ("vkontakte", "48151699") in socials(db_path)
    assert got[("bot.helper", "bot")]["external"] == "bot"


def write_batch(tmp_path, header=HEADER, rows=ROWS, name="batch.tsv", footer=False, encoding="utf-8"):
    lines = ["\t".join(header)] + ["\t".join(batch_escape(v) for v in row) for row in rows]
    if footer:
        lines.append(f"({len(rows)} rows)")
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_mysql_batch_tab_file(store, tmp_path, db_path, repeat_emails):
    s = imported(store, write_batch(tmp_path))
    assert (s["format"], s["added"], s["bad"]) == ("bitrix", 6, [])
    check_accounts(db_path)


@pytest.mark.parametrize("sep", ["\t", ";", ","])
def test_header_less_outfile_with_columns(store, tmp_path, db_path, repeat_emails, sep):
    path = tmp_path / "out.txt"
    path.write_text("".join(sep.join(outfile_escape(v, sep) for v in row) + "\n" for row in ROWS),
                    encoding="utf-8")
    s = imported(store, path, "--columns", ",".join(HEADER))
    assert (s["format"], s["added"], s["bad"]) == ("bitrix", 6, [])
    check_accounts(db_path)


def test_outfile_optionally_enclosed(store, tmp_path, db_path, repeat_emails):
    def cell(v):
        if v is None:
            return "\\N"
        if v.isdigit():
            return v
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n") + '"'

    path = tmp_path / "enclosed.csv"
    path.write_text("".join(",".join(cell(v) for v in row) + "\n" for row in ROWS), encoding="utf-8")
    s = imported(store, path, "--columns", ",".join(HEADER))
    assert (s["added"], s["bad"]) == (6, [])
    check_accounts(db_path)


def test_psql_csv_lower_case_header_and_footer(store, tmp_path, db_path, repeat_emails):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([h.lower() for h in HEADER])
    writer.writerows([["" if v is None else v for v in row] for row in ROWS])
    path = tmp_path / "pg.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    assert imported(store, path)["added"] == 6
    check_accounts(db_path)


def test_psql_footer_is_not_a_row(store, tmp_path, db_path, repeat_emails):
    s = imported(store, write_batch(tmp_path, header=[h.lower() for h in HEADER], footer=True))
    assert (s["added"], s["read"], s["bad"]) == (6, 6, [])


def test_windows_1251_export(store, tmp_path, db_path, repeat_emails):
    path = write_batch(tmp_path, encoding="cp1251")
    s = imported(store, path, exit_code=5)   # read as UTF-8, the Cyrillic rows are bad...
    assert s["bad"] and all("not valid UTF-8" in b["reason"] for b in s["bad"])
    s = imported(store, path, "--encoding", "windows-1251", "--on-conflict", "skip")
    assert s["bad"] == []                    # ...and come in with --encoding windows-1251
    check_accounts(db_path)


def test_unique_email_refuses_the_second_account(store, tmp_path, db_path):
    s = imported(store, write_batch(tmp_path), exit_code=5)
    assert [(b["login"], b["code"]) for b in s["bad"]] == [("k.sokolov", "conflict")]
    assert s["added"] == 5


def test_repeated_emails_lookup_and_request_every_account(store, tmp_path, db_path, repeat_emails):
    imported(store, write_batch(tmp_path))
    assert store("user", "unblock", "k.sokolov").exit_code == 0
    found = store("lookup", "office@example.ru", "--json").json["matches"]
    assert sorted(m["login"] for m in found) == ["k.sokolov", "m.volkova"]
    r = store("token", "request", "office@example.ru", "--json")
    assert r.exit_code == 0
    sent = store("outbox", "list", "--json").json["messages"]
    assert len(sent) == 2 and {m["recipient"] for m in sent} == {"office@example.ru"}
    tokens = store("token", "list", "--json").json["control_strings"]
    assert sorted(t["login"] for t in tokens) == ["k.sokolov", "m.volkova"]


def test_external_accounts_get_no_control_strings(store, tmp_path, db_path, repeat_emails):
    imported(store, write_batch(tmp_path))
    for argv in (("token", "issue", "bot.helper", "--via", "none"),
                 ("reset", "bot.helper", "--generate"),
                 ("link", "bot.helper", "--email", "bot@example.com", "--no-verify")):
        r = store(*argv, "--json")
        assert r.exit_code == 4 and r.error["code"] == "external_account", argv
        assert "chat bot" in r.error["message"]
    r = store("token", "request", "admin@corp.invalid", "--json")
    assert r.exit_code == 0
    assert store("outbox", "list", "--json").json["messages"] == []
    findings = store("diagnose", "bot.helper", "--json").json["findings"]
    assert [f["code"] for f in findings] == ["external_account"]
    assert "chat bot" in findings[0]["message"]
    # A login shared by an internal and an LDAP account names the internal one.
    shown = store("user", "show", "admin", "--json").json
    assert (shown["external"], shown["portal_id"]) == (None, 1)
    listing = store("user", "list", "--json").json["accounts"]
    assert sorted((a["login"], a["external"] or "") for a in listing if a["login"] == "admin") == \
        [("admin", ""), ("admin", "LDAP#1")]


@pytest.mark.parametrize("stored, reason", [
    ("$6$rounds=999999999$Ab3dE5fG7hJ9kL1m$" + "a" * 86, "rounds"),
    (sha512_crypt.using(salt="aB3dE5fG", rounds=5000).hash("x"), "not SHA-512-crypt to Bitrix"),
    (hashlib.md5(b"x").hexdigest().upper(), "lower-case hex"),
])
def test_unusable_hashes_are_refused_with_the_line(store, tmp_path, stored, reason):
    rows = [ROWS[1][:9] + [stored] + ROWS[1][10:]]
    s = imported(store, write_batch(tmp_path, rows=rows), exit_code=5)
    assert s["bad"][0]["line"] == 2 and reason in s["bad"][0]["reason"]


def test_bare_cr_header_and_binary_file_are_exit_5_with_the_line(store, tmp_path):
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"LOGIN,EMAIL\rEXTERNAL_AUTH_ID\nanna,a@example.com,\n")
    r = store("user", "import", str(cr), "--json")
    assert r.exit_code == 5 and r.error["message"].startswith("line 1:") and "carriage return" in r.error["message"]
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 4)
    r = store("user", "import", str(binary), "--json")
    assert r.exit_code == 5 and r.error["message"].startswith("line 1:") and "binary" in r.error["message"]
    cp1251 = tmp_path / "cp.csv"
    cp1251.write_bytes("ЛОГИН,x\n".encode("cp1251"))
    r = store("user", "import", str(cp1251), "--json")
    assert r.exit_code == 5 and "windows-1251" in r.error["hint"]


def test_windows_1251_portal_verifies_cp1251_passwords(store, tmp_path, db_path, config_path):
    password = "Белые ночи 1703"
    rows = [["7", "olga", "olga@example.ru", None, "Ольга", None, "Y", "N", None,
             "Zx9" + hashlib.md5(b"Zx9" + password.encode("cp1251")).hexdigest(), "ru", None, None, None]]
    imported(store, write_batch(tmp_path, rows=rows, encoding="cp1251"), "--encoding", "windows-1251")
    new = "a completely new passphrase"
    r = store("passwd", "olga", "--password-stdin", "--json", input=f"{password}\n{new}\n")
    assert r.exit_code == 6          # hashed over UTF-8 bytes it is another password
    with open(config_path, "a", encoding="utf-8") as f:
        f.write('[portal]\ncharset = "windows-1251"\n')
    r = store("passwd", "olga", "--password-stdin", "--json", input=f"{password}\n{new}\n")
    assert r.exit_code == 0, r.stderr


def test_user_add_follows_unique_email(store, config_path):
    from conftest import add_user

    add_user(store, "anna", "--email", "office@example.ru")
    r = store("user", "add", "bob", "--email", "Office@Example.ru", "--password-stdin", "--json",
              input="correct horse battery staple\n")
    assert r.exit_code == 4 and r.error["code"] == "conflict"
    with open(config_path, "a", encoding="utf-8") as f:
        f.write("[accounts]\nunique_email = false\n")
    add_user(store, "bob", "--email", "Office@Example.ru")
    found = store("lookup", "office@example.ru", "--json").json["matches"]
    assert sorted(m["login"] for m in found) == ["anna", "bob"]
