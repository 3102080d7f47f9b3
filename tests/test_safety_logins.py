"""Issue 13 item 11: look-alike logins. Logins are NFKC-normalised, invisible and format
characters are refused, and a login whose TR39 confusable skeleton equals an existing account's
is a `conflict` naming it (user add, user update --rename, user import)."""

from __future__ import annotations

import sqlite3
import unicodedata

import pytest

from conftest import add_user, connect_db


def login_skeleton(text: str) -> str:
    from b24recover.services.identifiers import login_skeleton

    return login_skeleton(text)

CYRILLIC_A = "\u0430"


def users(db_path) -> dict:
    conn = connect_db(db_path)
    conn.row_factory = sqlite3.Row
    return {r["login"]: dict(r) for r in conn.execute("SELECT * FROM users")}


def add(cli, login: str):
    return cli("user", "add", login, "--no-password", "--social", f"google:{abs(hash(login))}", "--json")


@pytest.fixture
def anna(store):
    add_user(store, "anna")
    return store


@pytest.mark.parametrize("look_alike", [
    f"{CYRILLIC_A}nna",              # Cyrillic а
    "ANNA".replace("A", "\u0410"),   # Cyrillic capitals
    "\u0251nna",                     # Latin alpha
])
def test_a_look_alike_of_an_existing_login_is_a_conflict_naming_it(anna, db_path, look_alike):
    r = add(anna, look_alike)
    assert r.exit_code == 4 and r.error["code"] == "conflict", r.stderr
    assert "'anna'" in r.error["message"] and r.error["owner"] == "anna"
    assert list(users(db_path)) == ["anna"]


def test_rn_looks_like_m(store):
    assert add(store, "modern").exit_code == 0
    r = add(store, "rnodern")
    assert r.exit_code == 4 and r.error["owner"] == "modern"


def test_full_width_letters_become_plain_ones(store, db_path):
    assert add(store, "\uff42\uff4f\uff52\uff49\uff53").exit_code == 0  # ｂｏｒｉｓ
    assert list(users(db_path)) == ["boris"]
    again = add(store, "boris")
    assert again.exit_code == 4 and again.error["code"] == "conflict"


@pytest.mark.parametrize("hidden", ["\u200b", "\u00ad", "\u202e", "\u2066", "\u200d", "\ufeff", "\u034f",
                                    "\ufe0f"])
def test_invisible_characters_are_refused(anna, db_path, hidden):
    r = add(anna, f"bo{hidden}ris")
    assert r.exit_code == 5 and r.error["code"] == "invalid_input"
    assert f"U+{ord(hidden):04X}" in r.error["message"]
    assert "bo" not in "".join(users(db_path))


def test_rename_to_a_look_alike_is_a_conflict_but_own_case_is_fine(anna, db_path):
    add_user(anna, "boris")
    r = anna("user", "update", "boris", "--rename", f"{CYRILLIC_A}nna", "--json")
    assert r.exit_code == 4 and r.error["owner"] == "anna"
    assert anna("user", "update", "anna", "--rename", "Anna", "--json").exit_code == 0
    assert sorted(users(db_path)) == ["Anna", "boris"]
    assert anna("user", "update", "boris", "--rename", "bo\u200bris", "--json").exit_code == 5


def test_import_refuses_look_alikes_of_the_store_and_of_earlier_rows(anna, db_path, tmp_path):
    path = tmp_path / "u.csv"
    path.write_text(f"login,email\n{CYRILLIC_A}nna,a1@example.com\nmodern,m@example.com\n"
                    "rnodern,r@example.com\nz\u200bed,z@example.com\n\uff43arl,c@example.com\n", encoding="utf-8")
    r = anna("user", "import", str(path), "--json")
    assert r.exit_code == 5, r.stderr
    result = r.json
    bad = {b["line"]: b for b in result["bad"]}
    assert bad[2]["code"] == "conflict" and "'anna'" in bad[2]["reason"]
    assert bad[4]["code"] == "conflict" and "line 3" in bad[4]["reason"]
    assert bad[5]["code"] == "invalid_input" and "U+200B" in bad[5]["reason"]
    assert sorted(users(db_path)) == ["anna", "carl", "modern"]


def test_import_skip_mode_skips_look_alikes(anna, db_path, tmp_path):
    path = tmp_path / "u.csv"
    path.write_text(f"login\n{CYRILLIC_A}nna\nvera\n", encoding="utf-8")
    r = anna("user", "import", str(path), "--on-conflict", "skip", "--json")
    assert r.exit_code == 0 and r.json["skipped"] == 1 and r.json["added"] == 1
    assert sorted(users(db_path)) == ["anna", "vera"]


def test_the_skeleton_is_stored_and_init_fills_older_rows(anna, db_path):
    assert users(db_path)["anna"]["login_skeleton"] == login_skeleton("anna") == "anna"
    conn = connect_db(db_path)
    conn.execute("UPDATE users SET login_skeleton = NULL")  # as a store from before the rule
    conn.commit()
    assert anna("init").exit_code == 0
    assert users(db_path)["anna"]["login_skeleton"] == "anna"
    assert add(anna, f"{CYRILLIC_A}nna").exit_code == 4


def test_skeleton_follows_the_unicode_data_file():
    """TR39 section 4: skeleton = NFD(map each character of NFD(X) to its prototype). Checked
    against the data file line by line for a sample of letters of many scripts."""
    from b24recover.services.confusables import DATA_FILE, skeleton

    lines = [line.split(";") for line in DATA_FILE.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    assert len(lines) > 6000
    checked = 0
    for source, target in lines:
        char = chr(int(source, 16))
        if unicodedata.normalize("NFD", char) != char or not char.isalpha():
            continue
        expected = unicodedata.normalize("NFD", "".join(chr(int(cp, 16)) for cp in target.split()))
        assert skeleton(char) == expected, (source, target)
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize("a,b", [("paypal", "p\u0430yp\u0430l"), ("scope", "\u0455\u0441\u043e\u0440\u0435"),
                                 ("bill", "biII"), ("h1", "hl"), ("anna", "ANNA")])
def test_known_look_alikes_share_a_skeleton(a, b):
    assert login_skeleton(a) == login_skeleton(b)


@pytest.mark.parametrize("a,b", [("anna", "anne"), ("boris", "doris"), ("ivan", "iwan")])
def test_different_logins_keep_different_skeletons(a, b):
    assert login_skeleton(a) != login_skeleton(b)
