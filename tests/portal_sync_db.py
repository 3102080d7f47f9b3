"""Portal databases for the sync tests: a real MariaDB/MySQL or PostgreSQL server on 127.0.0.1,
one uniquely named database per test module (dropped after), holding the b_user family of
tables as SPEC §6 describes them (Bitrix's own column types, lower-case on PostgreSQL).

No server: the tests skip with a one-line reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import uuid

import pytest

MYSQL = {"host": "127.0.0.1", "port": int(os.environ.get("B24TEST_MYSQL_PORT", "3306")), "user": "root"}
POSTGRES = {"host": "127.0.0.1", "port": int(os.environ.get("B24TEST_PG_PORT", "5432")), "user": "postgres"}

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
        UNIQUE KEY IX_B_SOCIALSERVICES_USER (XML_ID, EXTERNAL_AUTH_ID),
        KEY IX_B_SOCIALSERVICES_US_3 (USER_ID)
    )""",
    """CREATE TABLE b_group (
        ID int(18) NOT NULL AUTO_INCREMENT PRIMARY KEY,
        ACTIVE char(1) NOT NULL DEFAULT 'Y',
        NAME varchar(255) NOT NULL,
        SECURITY_POLICY text NULL,
        STRING_ID varchar(255) NULL
    )""",
    """CREATE TABLE b_user_group (
        USER_ID int(18) NOT NULL,
        GROUP_ID int(18) NOT NULL,
        DATE_ACTIVE_FROM datetime NULL,
        DATE_ACTIVE_TO datetime NULL,
        UNIQUE KEY ix_user_group (USER_ID, GROUP_ID)
    )""",
    """CREATE TABLE b_option (
        MODULE_ID varchar(50) NOT NULL,
        NAME varchar(100) NOT NULL,
        VALUE mediumtext NULL,
        DESCRIPTION varchar(255) NULL,
        SITE_ID char(2) NULL,
        UNIQUE KEY ix_option (MODULE_ID, NAME, SITE_ID)
    )""",
]

POSTGRES_DDL = [
    """CREATE TABLE b_user (
        id serial PRIMARY KEY,
        timestamp_x timestamp DEFAULT CURRENT_TIMESTAMP,
        login varchar(50) NOT NULL,
        password varchar(255) NOT NULL,
        checkword varchar(255),
        active char(1) NOT NULL DEFAULT 'Y',
        blocked char(1) NOT NULL DEFAULT 'N',
        name varchar(50),
        last_name varchar(50),
        email varchar(255),
        personal_phone varchar(255),
        personal_mobile varchar(255),
        login_attempts int,
        language_id char(2),
        checkword_time timestamp,
        external_auth_id varchar(255),
        password_expired char(1) NOT NULL DEFAULT 'N'
    )""",
    "CREATE UNIQUE INDEX ix_b_user_login ON b_user (login, external_auth_id)",
    """CREATE TABLE b_user_phone_auth (
        user_id int PRIMARY KEY,
        phone_number varchar(25) NOT NULL UNIQUE,
        otp_secret text,
        attempts int DEFAULT 0,
        confirmed char(1) DEFAULT 'N',
        date_sent timestamp
    )""",
    """CREATE TABLE b_socialservices_user (
        id serial PRIMARY KEY,
        login varchar(100) NOT NULL,
        name varchar(100),
        last_name varchar(100),
        email varchar(100),
        external_auth_id varchar(100) NOT NULL,
        user_id int NOT NULL,
        xml_id varchar(100) NOT NULL,
        UNIQUE (xml_id, external_auth_id)
    )""",
    """CREATE TABLE b_group (
        id serial PRIMARY KEY,
        active char(1) NOT NULL DEFAULT 'Y',
        name varchar(255) NOT NULL,
        security_policy text,
        string_id varchar(255)
    )""",
    """CREATE TABLE b_user_group (
        user_id int NOT NULL,
        group_id int NOT NULL,
        date_active_from timestamp,
        date_active_to timestamp,
        UNIQUE (user_id, group_id)
    )""",
    """CREATE TABLE b_option (
        module_id varchar(50) NOT NULL,
        name varchar(100) NOT NULL,
        value text,
        description varchar(255),
        site_id char(2)
    )""",
]


def _skip_or_fail(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: server tests must run)")
    pytest.skip(reason)


class PortalDB:
    """One database on a real server; `execute` runs SQL on it (autocommit)."""

    def __init__(self, engine: str, charset: str = "utf-8"):
        self.engine, self.charset = engine, charset
        self.name = f"b24p_{uuid.uuid4().hex[:12]}"
        self.conn = None
        if engine == "mysql":
            import pymysql

            try:
                admin = pymysql.connect(**MYSQL, password="", autocommit=True, connect_timeout=3)
            except pymysql.err.Error as exc:
                _skip_or_fail(f"no MariaDB/MySQL server at 127.0.0.1:{MYSQL['port']}: {exc.args[-1]}")
            db_charset = "cp1251" if charset == "windows-1251" else "utf8mb4"
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.name} CHARACTER SET {db_charset}")
            admin.close()
            self.conn = pymysql.connect(**MYSQL, password="", database=self.name, autocommit=True,
                                        charset="utf8mb4")
            ddl = MYSQL_DDL
        else:
            import psycopg2

            try:
                admin = psycopg2.connect(**POSTGRES, dbname="postgres", connect_timeout=3)
            except psycopg2.Error as exc:
                _skip_or_fail(f"no PostgreSQL server at 127.0.0.1:{POSTGRES['port']}: {str(exc).strip()}")
            admin.autocommit = True
            encoding = "WIN1251" if charset == "windows-1251" else "UTF8"
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'"
                            " TEMPLATE template0")
            admin.close()
            self.conn = psycopg2.connect(**POSTGRES, dbname=self.name, client_encoding="UTF8")
            self.conn.autocommit = True
            ddl = POSTGRES_DDL
        for statement in ddl:
            self.execute(statement)

    @property
    def dsn(self) -> str:
        server = MYSQL if self.engine == "mysql" else POSTGRES
        scheme = "mysql" if self.engine == "mysql" else "postgresql"
        return f"{scheme}://{server['user']}@{server['host']}:{server['port']}/{self.name}"

    def execute(self, sql: str, params=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            try:
                return cur.fetchall()
            except Exception:  # noqa: BLE001  (a statement without rows)
                return None

    def now_sql(self) -> str:
        return "NOW()" if self.engine == "mysql" else "LOCALTIMESTAMP"

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.engine == "mysql":
            import pymysql

            admin = pymysql.connect(**MYSQL, password="", autocommit=True)
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name}")
            admin.close()
        else:
            import psycopg2

            admin = psycopg2.connect(**POSTGRES, dbname="postgres")
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            admin.close()
