"""A Bitrix24 portal database for tests: the b_user family of tables as SPEC §6 states them, on
a real MariaDB/MySQL or PostgreSQL server on 127.0.0.1, in a uniquely named database that is
dropped afterwards, filled with rows written the way Bitrix writes them.

    from portal_db import PortalDB, PORTAL_USERS
    with PortalDB.create("mariadb", charset="cp1251") as db:   # or "postgres"
        db.fill(PORTAL_USERS)
        db.query("SELECT ...")

Each entry of PORTAL_USERS is one b_user row (upper-case column names), its b_user_phone_auth
number (PHONE_AUTH), its b_socialservices_user rows (SOCIAL: [(provider, xml_id)]), and what
b24recover must make of it (EXPECT), written by hand from SPEC §4 — never computed by the code
under test. `requires` names rows that only a utf8mb4/UTF-8 database can hold.

No server reachable: `PortalDB.create` skips the test with a one-line reason, and fails it
instead under CI=true. Servers: MariaDB root with an empty password, PostgreSQL user postgres
with trust authentication (ports from B24TEST_MYSQL_PORT / B24TEST_PG_PORT).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field

import pytest

HOST = "127.0.0.1"
MYSQL_PORT = int(os.environ.get("B24TEST_MYSQL_PORT", "3306"))
PG_PORT = int(os.environ.get("B24TEST_PG_PORT", "5432"))
MYSQL_USER, PG_USER = "root", "postgres"

# ---- DDL (Bitrix main module: install/mysql/install.sql, install/pgsql/install.sql) -------------

MYSQL_DDL = [
    """CREATE TABLE b_user (
        ID int(18) NOT NULL AUTO_INCREMENT PRIMARY KEY,
        TIMESTAMP_X timestamp NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        LOGIN varchar(50) NOT NULL,
        PASSWORD varchar(255) NOT NULL,
        CHECKWORD varchar(255) NULL,
        ACTIVE char(1) NOT NULL DEFAULT 'Y',
        BLOCKED char(1) NOT NULL DEFAULT 'N',
        NAME varchar(50) NULL,
        LAST_NAME varchar(50) NULL,
        EMAIL varchar(255) NULL,
        PERSONAL_PHONE varchar(255) NULL,
        PERSONAL_MOBILE varchar(255) NULL,
        LOGIN_ATTEMPTS int(18) NULL,
        LANGUAGE_ID char(2) NULL,
        CHECKWORD_TIME datetime NULL,
        EXTERNAL_AUTH_ID varchar(255) NULL,
        PASSWORD_EXPIRED char(1) NOT NULL DEFAULT 'N',
        XML_ID varchar(255) NULL,
        UNIQUE KEY ix_login (LOGIN, EXTERNAL_AUTH_ID),
        KEY ix_b_user_email (EMAIL)
    )""",
    """CREATE TABLE b_user_phone_auth (
        USER_ID int NOT NULL PRIMARY KEY,
        PHONE_NUMBER varchar(25) NOT NULL,
        OTP_SECRET text NULL,
        ATTEMPTS int NULL DEFAULT 0,
        CONFIRMED char(1) NULL DEFAULT 'N',
        DATE_SENT datetime NULL,
        UNIQUE KEY ix_user_phone_auth_number (PHONE_NUMBER)
    )""",
    """CREATE TABLE b_socialservices_user (
        ID int NOT NULL AUTO_INCREMENT PRIMARY KEY,
        LOGIN varchar(100) NOT NULL,
        NAME varchar(100) NULL,
        LAST_NAME varchar(100) NULL,
        EMAIL varchar(100) NULL,
        EXTERNAL_AUTH_ID varchar(100) NOT NULL,
        USER_ID int NOT NULL,
        XML_ID varchar(100) NOT NULL,
        UNIQUE KEY ix_b_socialservices_user (XML_ID, EXTERNAL_AUTH_ID),
        KEY ix_b_socialservices_us_3 (USER_ID)
    )""",
    "CREATE TABLE b_group (ID int NOT NULL AUTO_INCREMENT PRIMARY KEY, ACTIVE char(1) NOT NULL DEFAULT 'Y',"
    " NAME varchar(255) NOT NULL, SECURITY_POLICY text NULL)",
    "CREATE TABLE b_user_group (USER_ID int NOT NULL, GROUP_ID int NOT NULL, DATE_ACTIVE_FROM datetime NULL,"
    " DATE_ACTIVE_TO datetime NULL, UNIQUE KEY ix_user_group (USER_ID, GROUP_ID))",
    "CREATE TABLE b_option (MODULE_ID varchar(50) NOT NULL, NAME varchar(100) NOT NULL, VALUE mediumtext NULL,"
    " SITE_ID char(2) NULL, UNIQUE KEY ix_option (MODULE_ID, NAME, SITE_ID))",
    "CREATE TABLE b_user_password (ID int NOT NULL AUTO_INCREMENT PRIMARY KEY, USER_ID int NOT NULL,"
    " PASSWORD varchar(255) NOT NULL, DATE_CHANGE datetime NOT NULL, KEY ix_b_user_password_user (USER_ID))",
    "CREATE TABLE b_user_stored_auth (ID int NOT NULL AUTO_INCREMENT PRIMARY KEY, USER_ID int NOT NULL,"
    " DATE_REG datetime NOT NULL, LAST_AUTH datetime NOT NULL, STORED_HASH varchar(32) NOT NULL,"
    " TEMP_HASH char(1) NOT NULL DEFAULT 'N', IP_ADDR int NOT NULL DEFAULT 0, KEY ux_user_hash (USER_ID))",
    "CREATE TABLE b_user_auth_action (ID int NOT NULL AUTO_INCREMENT PRIMARY KEY, USER_ID int NOT NULL,"
    " PRIORITY int NOT NULL DEFAULT 100, ACTION varchar(20) NULL, ACTION_DATE datetime NOT NULL,"
    " APPLICATION_ID varchar(255) NULL, KEY ix_auth_action_user (USER_ID, PRIORITY))",
]

# PostgreSQL: the same tables, names lower-case (Bitrix's pgsql install script).
POSTGRES_DDL = [
    """CREATE TABLE b_user (
        id serial PRIMARY KEY,
        timestamp_x timestamp NULL DEFAULT now(),
        login varchar(50) NOT NULL,
        password varchar(255) NOT NULL,
        checkword varchar(255) NULL,
        active char(1) NOT NULL DEFAULT 'Y',
        blocked char(1) NOT NULL DEFAULT 'N',
        name varchar(50) NULL,
        last_name varchar(50) NULL,
        email varchar(255) NULL,
        personal_phone varchar(255) NULL,
        personal_mobile varchar(255) NULL,
        login_attempts int NULL,
        language_id char(2) NULL,
        checkword_time timestamp NULL,
        external_auth_id varchar(255) NULL,
        password_expired char(1) NOT NULL DEFAULT 'N',
        xml_id varchar(255) NULL
    )""",
    "CREATE UNIQUE INDEX ix_login ON b_user (login, external_auth_id)",
    "CREATE INDEX ix_b_user_email ON b_user (email)",
    """CREATE TABLE b_user_phone_auth (
        user_id int NOT NULL PRIMARY KEY,
        phone_number varchar(25) NOT NULL UNIQUE,
        otp_secret text NULL,
        attempts int NULL DEFAULT 0,
        confirmed char(1) NULL DEFAULT 'N',
        date_sent timestamp NULL
    )""",
    """CREATE TABLE b_socialservices_user (
        id serial PRIMARY KEY,
        login varchar(100) NOT NULL,
        name varchar(100) NULL,
        last_name varchar(100) NULL,
        email varchar(100) NULL,
        external_auth_id varchar(100) NOT NULL,
        user_id int NOT NULL,
        xml_id varchar(100) NOT NULL,
        UNIQUE (xml_id, external_auth_id)
    )""",
    "CREATE INDEX ix_b_socialservices_us_3 ON b_socialservices_user (user_id)",
    "CREATE TABLE b_group (id serial PRIMARY KEY, active char(1) NOT NULL DEFAULT 'Y', name varchar(255) NOT NULL,"
    " security_policy text NULL)",
    "CREATE TABLE b_user_group (user_id int NOT NULL, group_id int NOT NULL, date_active_from timestamp NULL,"
    " date_active_to timestamp NULL, UNIQUE (user_id, group_id))",
    "CREATE TABLE b_option (module_id varchar(50) NOT NULL, name varchar(100) NOT NULL, value text NULL,"
    " site_id char(2) NULL, UNIQUE (module_id, name, site_id))",
    "CREATE TABLE b_user_password (id serial PRIMARY KEY, user_id int NOT NULL, password varchar(255) NOT NULL,"
    " date_change timestamp NOT NULL)",
    "CREATE TABLE b_user_stored_auth (id serial PRIMARY KEY, user_id int NOT NULL, date_reg timestamp NOT NULL,"
    " last_auth timestamp NOT NULL, stored_hash varchar(32) NOT NULL, temp_hash char(1) NOT NULL DEFAULT 'N',"
    " ip_addr int NOT NULL DEFAULT 0)",
    "CREATE TABLE b_user_auth_action (id serial PRIMARY KEY, user_id int NOT NULL, priority int NOT NULL DEFAULT 100,"
    " action varchar(20) NULL, action_date timestamp NOT NULL, application_id varchar(255) NULL)",
]

B_USER_COLUMNS = ("ID", "LOGIN", "PASSWORD", "ACTIVE", "BLOCKED", "NAME", "LAST_NAME", "EMAIL", "PERSONAL_PHONE",
                  "LANGUAGE_ID", "EXTERNAL_AUTH_ID")


# ---- rows ----------------------------------------------------------------------------------------

def crypt6(password: str, salt: str, encoding: str = "utf-8") -> str:
    """Password::hash: $6$ + 16 characters of [0-9A-Za-z] + SHA-512-crypt (libpass, independent)."""
    from passlib.hash import sha512_crypt

    return sha512_crypt.using(salt=salt, rounds=5000).hash(password.encode(encoding))


def salted_md5(password: str, salt: str, encoding: str = "utf-8") -> str:
    return salt + hashlib.md5(salt.encode(encoding) + password.encode(encoding)).hexdigest()


def md5(password: str) -> str:
    return hashlib.md5(password.encode()).hexdigest()


@dataclass
class PortalUser:
    row: dict                       # b_user columns; missing ones are NULL
    phone_auth: str | None = None
    social: list = field(default_factory=list)   # [(EXTERNAL_AUTH_ID, XML_ID)]
    expect: dict = field(default_factory=dict)   # the account b24recover keeps; {"refused": text} if none
    requires: str | None = None                  # "utf8": only a UTF-8 database can hold it


def _users(encoding: str) -> list[PortalUser]:
    """The portal's users; password hashes over `encoding` bytes, as that portal would write them."""
    admin_hash = crypt6("Kremlin-Admin-1147", "Ab3dE5fG7hJ9kL1m", encoding)
    olga_hash = crypt6("Белые ночи 1703", "pT7nE2sVe5F6g7H8", encoding)
    volkova_hash = salted_md5("welcome2010", "q1;W2,e3", encoding)
    mueller_hash = salted_md5("Sommerwiese!42", "a\\b", encoding)
    smith_hash = salted_md5("golden gate 1937", "k;,\\Zq9*0!xy", encoding)
    long_hash = salted_md5("пароль с солью", ";,\\" * 13 + "x", encoding)
    return [
        PortalUser({"ID": 1, "LOGIN": "admin", "PASSWORD": admin_hash, "NAME": "Администратор",
                    "EMAIL": "admin@portal.local", "PERSONAL_PHONE": "+7 (343) 222-33-44", "LANGUAGE_ID": "ru"},
                   phone_auth="+79120000001",
                   expect={"email": "admin@portal.local", "phone": "+79120000001",
                           "profile_phone": "+7 (343) 222-33-44", "hash": admin_hash, "name": "Администратор"}),
        PortalUser({"ID": 2, "LOGIN": "m.volkova", "PASSWORD": volkova_hash, "NAME": "Марина", "LAST_NAME": "Вол\tкова",
                    "EMAIL": "office@example.ru", "PERSONAL_PHONE": "+7 343 222-00-00", "LANGUAGE_ID": "ru",
                    "EXTERNAL_AUTH_ID": ""},
                   expect={"email": "office@example.ru", "phone": "+73432220000", "profile_phone": "+7 343 222-00-00",
                           "hash": volkova_hash, "last_name": "Вол кова", "name": "Марина"}),
        PortalUser({"ID": 3, "LOGIN": "k.sokolov", "PASSWORD": md5("password1"), "ACTIVE": "N", "NAME": "Кирилл",
                    "LAST_NAME": "Соколов", "EMAIL": "office@example.ru", "PERSONAL_PHONE": "+7 343 222-00-00",
                    "LANGUAGE_ID": "ua"},
                   expect={"email": "office@example.ru", "phone": None, "profile_phone": "+7 343 222-00-00",
                           "hash": md5("password1"), "blocked": True, "lang": None}),
        PortalUser({"ID": 4, "LOGIN": "admin", "PASSWORD": md5("ldap-cache"), "NAME": "Admin", "LAST_NAME": "LDAP",
                    "EMAIL": "admin@corp.invalid", "PERSONAL_PHONE": "доб. 123", "EXTERNAL_AUTH_ID": "LDAP#1",
                    "LANGUAGE_ID": "en"},
                   expect={"external": "LDAP#1", "email": "admin@corp.invalid", "phone": None,
                           "profile_phone": "доб. 123", "hash": None}),
        PortalUser({"ID": 5, "LOGIN": "VK_48151699", "PASSWORD": md5("random-social"), "NAME": "Павел",
                    "LAST_NAME": "Морозов", "EXTERNAL_AUTH_ID": "socservices", "LANGUAGE_ID": "ru"},
                   social=[("VKontakte", "48151699")],
                   expect={"hash": None, "social": {("vkontakte", "48151699")}}),
        PortalUser({"ID": 6, "LOGIN": "bot.helper", "PASSWORD": md5("bot"), "NAME": "Помощник",
                    "EXTERNAL_AUTH_ID": "bot"},
                   expect={"external": "bot", "hash": None}),
        PortalUser({"ID": 7, "LOGIN": "guest.mail", "PASSWORD": md5("g"), "EMAIL": "guest@example.com",
                    "EXTERNAL_AUTH_ID": "email"},
                   expect={"external": "email", "email": "guest@example.com", "hash": None}),
        PortalUser({"ID": 8, "LOGIN": "imconnector_17", "PASSWORD": md5("i"), "NAME": "WhatsApp; client",
                    "EXTERNAL_AUTH_ID": "imconnector"},
                   expect={"external": "imconnector", "name": "WhatsApp; client", "hash": None}),
        PortalUser({"ID": 9, "LOGIN": "j.mueller", "PASSWORD": mueller_hash, "NAME": "Juergen \\ Jay",
                    "LAST_NAME": "Mueller", "EMAIL": "j.mueller@example.de", "PERSONAL_PHONE": "+49 151 23456789",
                    "LANGUAGE_ID": "de"},
                   expect={"hash": mueller_hash, "name": "Juergen \\ Jay", "phone": "+4915123456789", "lang": "de"}),
        PortalUser({"ID": 10, "LOGIN": "p.smith", "PASSWORD": smith_hash, "NAME": "Peter", "LAST_NAME": "Smith\nJr.",
                    "EMAIL": "peter.smith@example.com", "PERSONAL_PHONE": "+1 (415) 555-0132", "LANGUAGE_ID": "en"},
                   expect={"hash": smith_hash, "last_name": "Smith Jr.", "phone": "+14155550132"}),
        PortalUser({"ID": 11, "LOGIN": "s.long", "PASSWORD": long_hash, "NAME": "Семён", "EMAIL": "s.long@example.ru"},
                   expect={"hash": long_hash}),
        PortalUser({"ID": 12, "LOGIN": "o.petrova", "PASSWORD": olga_hash, "BLOCKED": "Y", "NAME": "Ольга",
                    "LAST_NAME": "Петрова", "EMAIL": "Olga.Petrova@Example.ru", "LANGUAGE_ID": "ru"},
                   social=[("GoogleOAuth", "104729384756102938475")],
                   expect={"hash": olga_hash, "blocked": True, "email": "Olga.Petrova@example.ru",
                           "social": {("googleoauth", "104729384756102938475")}}),
        PortalUser({"ID": 13, "LOGIN": "n.nulls", "PASSWORD": ""},
                   expect={"hash": None, "email": None, "phone": None, "name": "", "last_name": "", "lang": None}),
        PortalUser({"ID": 14, "LOGIN": "o.brien", "PASSWORD": md5("q"), "NAME": 'Sean "Jr"', "LAST_NAME": "O'Brien",
                    "EMAIL": "o.brien@example.com"},
                   expect={"name": 'Sean "Jr"', "last_name": "O'Brien", "hash": md5("q")}),
        PortalUser({"ID": 15, "LOGIN": "phone.only", "PASSWORD": md5("p")}, phone_auth="+79161234567",
                   expect={"phone": "+79161234567", "email": None}),
        PortalUser({"ID": 16, "LOGIN": "rounds.user", "PASSWORD": "$6$rounds=999999999$Ab3dE5fG7hJ9kL1m$" + "a" * 86},
                   expect={"refused": "rounds"}),
        PortalUser({"ID": 17, "LOGIN": "short.six", "PASSWORD": crypt6("x", "aB3dE5fG")},
                   expect={"refused": "not SHA-512-crypt to Bitrix"}),
        PortalUser({"ID": 18, "LOGIN": "i.tab", "PASSWORD": md5("t"), "NAME": "Иван\tИванович",
                    "EMAIL": "i.tab@example.ru", "PERSONAL_PHONE": "8 (912) 111-22-33; 8 (343) 000-00-00"},
                   expect={"name": "Иван Иванович", "phone": None,
                           "profile_phone": "8 (912) 111-22-33; 8 (343) 000-00-00"}),
        PortalUser({"ID": 19, "LOGIN": "FB_100042", "PASSWORD": md5("r"), "NAME": "Eva",
                    "EXTERNAL_AUTH_ID": "socservices"},
                   expect={"hash": None, "social": {("socservices", "FB_100042")}}),
        PortalUser({"ID": 20, "LOGIN": "jurgen.m", "PASSWORD": md5("u"), "NAME": "Jürgen", "LAST_NAME": "Müller 🙂",
                    "EMAIL": "jurgen@example.de"},
                   expect={"name": "Jürgen", "last_name": "Müller 🙂"}, requires="utf8"),
    ]


PORTAL_USERS = _users("utf-8")
PORTAL_USERS_CP1251 = [u for u in _users("cp1251") if u.requires != "utf8"]


def expected(user: PortalUser) -> dict:
    """The account b24recover keeps for a row: EXPECT, with defaults read off the row."""
    row, e = user.row, user.expect
    out = {
        "portal_id": row["ID"], "login": row["LOGIN"], "external": e.get("external"),
        "email": e.get("email", row.get("EMAIL")), "phone": e.get("phone"),
        "profile_phone": e.get("profile_phone", row.get("PERSONAL_PHONE")),
        "name": e.get("name", row.get("NAME") or ""), "last_name": e.get("last_name", row.get("LAST_NAME") or ""),
        "password_hash": e.get("hash", row.get("PASSWORD")), "blocked": e.get("blocked", False),
        "lang": e.get("lang", row.get("LANGUAGE_ID")), "social": e.get("social", set()),
    }
    return out


# ---- the server side -----------------------------------------------------------------------------

def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: server tests must run)")
    pytest.skip(reason)


class PortalDB:
    """One uniquely named portal database on a real server; a context manager that drops it."""

    def __init__(self, engine: str, charset: str, name: str, conn):
        self.engine, self.charset, self.name, self.conn = engine, charset, name, conn

    # -- life cycle --
    @classmethod
    def create(cls, engine: str, charset: str = "utf8mb4") -> "PortalDB":
        name = f"b24portal_{uuid.uuid4().hex[:12]}"
        if engine == "mariadb":
            import pymysql

            try:
                admin = pymysql.connect(host=HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", autocommit=True,
                                        connect_timeout=5)
            except pymysql.err.OperationalError as exc:
                _unavailable(f"no MariaDB/MySQL server at {HOST}:{MYSQL_PORT}: {exc.args[-1]}")
            with admin.cursor() as cur:
                collation = "utf8mb4_unicode_ci" if charset == "utf8mb4" else "cp1251_general_ci"
                cur.execute(f"CREATE DATABASE {name} CHARACTER SET {charset} COLLATE {collation}")
            admin.close()
            conn = pymysql.connect(host=HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", database=name,
                                   charset="utf8mb4", autocommit=True)
            db = cls(engine, charset, name, conn)
            for sql in MYSQL_DDL:
                db.execute(sql)
            return db
        if engine == "postgres":
            import psycopg2

            try:
                admin = psycopg2.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
            except psycopg2.OperationalError as exc:
                _unavailable(f"no PostgreSQL server at {HOST}:{PG_PORT}: {str(exc).strip().splitlines()[0]}")
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
            admin.close()
            conn = psycopg2.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname=name)
            conn.autocommit = True
            db = cls(engine, "utf8", name, conn)
            for sql in POSTGRES_DDL:
                db.execute(sql)
            return db
        raise ValueError(f"unknown engine {engine!r}")

    def __enter__(self) -> "PortalDB":
        return self

    def __exit__(self, *exc) -> None:
        self.drop()

    def drop(self) -> None:
        self.conn.close()
        if self.engine == "mariadb":
            import pymysql

            admin = pymysql.connect(host=HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", autocommit=True)
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name}")
            admin.close()
        else:
            import psycopg2

            admin = psycopg2.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            admin.close()

    # -- access --
    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return MYSQL_PORT if self.engine == "mariadb" else PG_PORT

    @property
    def user(self) -> str:
        return MYSQL_USER if self.engine == "mariadb" else PG_USER

    @property
    def dsn(self) -> str:
        scheme = "mysql" if self.engine == "mariadb" else "postgresql"
        return f"{scheme}://{self.user}@{HOST}:{self.port}/{self.name}"

    def ident(self, column: str) -> str:
        """A column or table name as this engine spells it (lower-case on PostgreSQL)."""
        return column if self.engine == "mariadb" else column.lower()

    def execute(self, sql: str, params=()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)

    def query(self, sql: str, params=()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            return list(cur.fetchall())

    def empty(self, tables) -> None:
        """Delete every row of these tables (each test starts from an empty portal)."""
        for table in tables:
            self.execute(f"DELETE FROM {table}")

    def insert_user(self, values: dict) -> int:
        """Insert one b_user row (upper-case names; PostgreSQL folds them) and return its ID."""
        names, marks = ", ".join(values), ", ".join(["%s"] * len(values))
        if self.engine == "mariadb":
            self.execute(f"INSERT INTO b_user ({names}) VALUES ({marks})", tuple(values.values()))
            return int(self.query("SELECT LAST_INSERT_ID()")[0][0])
        return int(self.query(f"INSERT INTO b_user ({names}) VALUES ({marks}) RETURNING ID", tuple(values.values()))[0][0])

    def fill(self, users: list[PortalUser]) -> None:
        """Insert the users, their phone_auth and socialservices rows, as Bitrix would."""
        cols = ", ".join(self.ident(c) for c in B_USER_COLUMNS)
        marks = ", ".join(["%s"] * len(B_USER_COLUMNS))
        for user in users:
            row = {"ACTIVE": "Y", "BLOCKED": "N", **user.row}
            self.execute(f"INSERT INTO b_user ({cols}) VALUES ({marks})", [row.get(c) for c in B_USER_COLUMNS])
            if user.phone_auth:
                self.execute(f"INSERT INTO b_user_phone_auth ({self.ident('USER_ID')}, {self.ident('PHONE_NUMBER')}, "
                             f"{self.ident('CONFIRMED')}) VALUES (%s, %s, 'Y')", (row["ID"], user.phone_auth))
            for provider, xml_id in user.social:
                self.execute(f"INSERT INTO b_socialservices_user ({self.ident('LOGIN')}, {self.ident('EXTERNAL_AUTH_ID')},"
                             f" {self.ident('USER_ID')}, {self.ident('XML_ID')}) VALUES (%s, %s, %s, %s)",
                             (row["LOGIN"], provider, row["ID"], xml_id))
        if self.engine == "postgres":  # serial columns: keep the sequence past the explicit ids
            self.execute("SELECT setval('b_user_id_seq', (SELECT max(id) FROM b_user))")
        self.execute(f"INSERT INTO b_option ({self.ident('MODULE_ID')}, {self.ident('NAME')}, {self.ident('VALUE')})"
                     " VALUES ('main', 'new_user_email_uniq_check', 'N')")
