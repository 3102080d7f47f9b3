"""Every export route of docs/bitrix.md, run exactly as documented against a real portal database
(MariaDB utf8mb4 and cp1251, PostgreSQL), then imported; the accounts must match the rows.

The commands and SQL files are taken from the document itself, so the docs cannot drift."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import ROOT
from portal_db import PORTAL_USERS, PORTAL_USERS_CP1251, PortalDB, expected

DOC = ROOT / "docs" / "bitrix.md"
BLOCK = re.compile(r"^```(\w+) (file|route)=(\S+)\n(.*?)^```", re.M | re.S)


def blocks() -> tuple[dict, dict]:
    files, routes = {}, {}
    for _lang, kind, name, body in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        (files if kind == "file" else routes)[name] = body
    return files, routes


FILES, ROUTES = blocks()
# route -> (engine, database charset, the rows that database holds)
WHERE = {
    "mysql-batch": ("mariadb", "utf8mb4"),
    "mysql-outfile": ("mariadb", "utf8mb4"),
    "mysql-outfile-enclosed": ("mariadb", "utf8mb4"),
    "mysql-cp1251-outfile": ("mariadb", "cp1251"),
    "mysql-cp1251-batch": ("mariadb", "cp1251"),
    "psql-csv": ("postgres", "utf8"),
    "psql-copy": ("postgres", "utf8"),
    "psql-unaligned": ("postgres", "utf8"),
}


def test_the_document_has_every_route_and_its_files():
    assert set(ROUTES) == set(WHERE)
    assert set(FILES) == {"b_user.sql", "b_user_pg.sql", "b_user_pg_escaped.sql"}
    for body in ROUTES.values():
        assert "b24recover user import" in body
        assert not re.search(r"--password|PGPASSWORD|MYSQL_PWD", body)  # never a password in argv or env


@pytest.fixture(scope="module")
def portals():
    """One portal database per (engine, charset), filled once and dropped after the module."""
    made: dict = {}

    def get(engine: str, charset: str) -> PortalDB:
        if (engine, charset) not in made:
            db = PortalDB.create(engine, "utf8mb4" if charset == "utf8" else charset)
            db.fill(PORTAL_USERS_CP1251 if charset == "cp1251" else PORTAL_USERS)
            made[(engine, charset)] = db
        return made[(engine, charset)]

    yield get
    for db in made.values():
        db.drop()


def store_accounts(db_path: Path) -> dict:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    socials: dict = {}
    for r in conn.execute("SELECT user_id, provider, subject FROM social_identities"):
        socials.setdefault(r["user_id"], set()).add((r["provider"], r["subject"]))
    accounts = {}
    for r in conn.execute("SELECT * FROM users"):
        accounts[(r["login"], r["external"])] = {
            "portal_id": r["portal_id"], "login": r["login"], "external": r["external"], "email": r["email"],
            "phone": r["phone"], "profile_phone": r["profile_phone"], "name": r["name"], "last_name": r["last_name"],
            "password_hash": r["password_hash"], "blocked": bool(r["blocked"]), "lang": r["lang"],
            "social": socials.get(r["id"], set()),
        }
    conn.close()
    return accounts


@pytest.mark.parametrize("route", sorted(WHERE))
def test_documented_route_imports_every_account(route, portals, tmp_path):
    engine, charset = WHERE[route]
    portal = portals(engine, charset)
    users = PORTAL_USERS_CP1251 if charset == "cp1251" else PORTAL_USERS
    work = tmp_path / "work"
    work.mkdir()
    for name, body in FILES.items():
        (work / name).write_text(body.rstrip("\n") + "\n", encoding="utf-8")
    config = tmp_path / "b24recover.toml"
    config.write_text('portal_url = "https://portal.example.com"\ndefault_country = "RU"\n'
                      "[hashing]\nbcrypt_rounds = 4\n[accounts]\nunique_email = false\n"
                      + ('[portal]\ncharset = "windows-1251"\n' if charset == "cp1251" else ""), encoding="utf-8")
    db_path = tmp_path / "store.db"
    outfile = f"/tmp/b24recover-route-{uuid.uuid4().hex}.txt"   # written by the database server itself
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24RECOVER_", "PG", "MYSQL"))}
    env.update(B24RECOVER_DB=str(db_path), B24RECOVER_CONFIG=str(config), DB_HOST=portal.host,
               DB_PORT=str(portal.port), DB_USER=portal.user, DB_NAME=portal.name, OUTFILE=outfile,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    init = subprocess.run([sys.executable, "-m", "b24recover", "init"], env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    try:
        done = subprocess.run(["bash", "-c", "set -o pipefail\n" + ROUTES[route]], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        Path(outfile).unlink(missing_ok=True)
    refused = [u for u in users if "refused" in u.expect]
    # The two unusable hashes are reported by line (and make the import exit 5); nothing else.
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert f"bad {len(refused)}." in done.stderr, done.stderr
    for u in refused:
        assert f"({u.row['LOGIN']}): " in done.stderr and u.expect["refused"] in done.stderr
    got = store_accounts(db_path)
    want = {(u.row["LOGIN"], u.expect.get("external")): expected(u) for u in users if "refused" not in u.expect}
    assert set(got) == set(want)
    for key, account in want.items():
        assert got[key] == account, key
