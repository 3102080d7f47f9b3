"""One connection to the portal's database, read-only, and the queries sync and status need.

One query set serves both engines: PostgreSQL folds unquoted names to lower case, which is how
Bitrix names its tables and columns there, and both drivers take `%s` placeholders. Rows come
back as tuples and are keyed here by Bitrix's upper-case column names, so nothing above this
module knows the engine. What differs (version, charset, catalog queries, the clock, opening a
read-only snapshot) is in `_DIALECTS`.
"""

from __future__ import annotations

import datetime as dt
import os

from ..errors import B24Error
from .dsn import Dsn, parse_dsn

CONNECT_TIMEOUT = 10  # seconds; a dead host must not hang a cron job
READ_TIMEOUT = 120    # seconds per statement (MySQL); a batch query takes milliseconds

USER_COLUMNS = ("ID", "LOGIN", "EMAIL", "ACTIVE", "BLOCKED", "PASSWORD", "EXTERNAL_AUTH_ID", "LANGUAGE_ID",
                "NAME", "LAST_NAME", "PERSONAL_PHONE", "PASSWORD_EXPIRED", "TIMESTAMP_X")
OPTIONAL_TABLES = ("b_user_phone_auth", "b_socialservices_user", "b_user_group", "b_group", "b_option")

_DIALECTS = {
    "mysql": {
        "version": "SELECT VERSION()",
        "charset": "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
        "tables": "SELECT LOWER(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
        "begin": "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    },
    "postgresql": {
        "version": "SHOW server_version",
        "charset": "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()",
        "tables": "SELECT LOWER(table_name) FROM information_schema.tables WHERE table_schema = current_schema()",
        "begin": None,  # psycopg2 opens each transaction itself, read-only by set_session
    },
}


def _unavailable(dsn: Dsn, what: str, exc: Exception | None = None) -> B24Error:
    detail = f": {_reason(exc)}" if exc is not None else ""
    return B24Error("portal_unavailable", f"the portal database {dsn.engine}://{dsn.user}@{dsn.where} {what}{detail}",
                    host=dsn.host, port=dsn.port)


def _reason(exc: Exception) -> str:
    """The driver's own words, first line only (never a password: none was in the DSN)."""
    args = getattr(exc, "args", ())
    text = str(args[1]) if len(args) >= 2 and isinstance(args[0], int) else str(exc)
    return (text.strip().splitlines() or ["no details"])[0][:300]


def password_from_env(var: str) -> str | None:
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise B24Error("portal_unavailable", f"the environment variable {var} named by [portal] password_env is not set",
                       hint=f"Export {var} with the portal database password (never put it in the DSN).")
    return value


class Portal:
    """An open, read-only transaction on the portal database. Use as a context manager."""

    def __init__(self, dsn: Dsn, conn, charset: str):
        self.dsn, self.conn, self.charset = dsn, conn, charset
        self.engine = dsn.engine
        self.sql = _DIALECTS[dsn.engine]
        self._tables: set | None = None
        self._errors = _driver_errors(dsn.engine)

    # ---- lifetime ----------------------------------------------------------------------------

    @classmethod
    def open(cls, settings) -> "Portal":
        if not settings.portal.dsn:
            raise B24Error("config_invalid", "no portal database is configured ([portal] dsn is empty)",
                           hint='Set [portal] dsn = "mysql://USER@HOST/DB" (or postgresql://…) and password_env.')
        dsn = parse_dsn(settings.portal.dsn)
        password = password_from_env(settings.portal.password_env)
        conn = _connect(dsn, password)
        portal = cls(dsn, conn, settings.portal.charset)
        portal._run(portal._begin, "refused a read-only transaction")
        return portal

    def _begin(self) -> None:
        if self.sql["begin"]:
            with self.conn.cursor() as cur:
                cur.execute(self.sql["begin"])

    def close(self) -> None:
        try:
            self.conn.rollback()  # nothing was written; end the snapshot
        except Exception:  # noqa: BLE001  (a connection already gone has nothing to end)
            pass
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def restart(self) -> None:
        """End this snapshot and start a new one (a long full sync must not pin old row versions)."""
        self._run(self.conn.rollback, "failed")
        self._run(self._begin, "refused a read-only transaction")

    # ---- queries -----------------------------------------------------------------------------

    def _run(self, call, what: str):
        try:
            return call()
        except self._errors as exc:
            raise _unavailable(self.dsn, what, exc) from None

    def _rows(self, sql: str, params=()) -> list[tuple]:
        def go():
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()

        return self._run(go, "failed a query")

    def _value(self, sql: str, params=()):
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def tables(self) -> set[str]:
        if self._tables is None:
            self._tables = {r[0] for r in self._rows(self.sql["tables"])}
            if "b_user" not in self._tables:
                raise B24Error("portal_unavailable", f"the portal database {self.dsn.where} has no b_user table",
                               hint="Check that [portal] dsn names the Bitrix24 database itself.",
                               host=self.dsn.host, port=self.dsn.port)
        return self._tables

    def version(self) -> str:
        return str(self._value(self.sql["version"]))

    def db_charset(self) -> str:
        return str(self._value(self.sql["charset"]) or "")

    def now(self) -> dt.datetime:
        """The database's clock, in the same time zone as TIMESTAMP_X."""
        return self._value("SELECT LOCALTIMESTAMP")

    def count_users(self) -> int:
        return int(self._value("SELECT COUNT(*) FROM b_user"))

    def count_changed(self, after: tuple | None) -> int:
        where, params = _after(after)
        return int(self._value(f"SELECT COUNT(*) FROM b_user {where}", params))

    def users_after(self, after: tuple | None, limit: int) -> list[dict]:
        """Up to `limit` users in (TIMESTAMP_X, ID) order after the key `after` (None: from the start)."""
        where, params = _after(after)
        rows = self._rows(f"SELECT {', '.join(USER_COLUMNS)} FROM b_user {where} ORDER BY TIMESTAMP_X, ID LIMIT %s",
                          (*params, int(limit)))
        return [dict(zip(USER_COLUMNS, r)) for r in rows]

    def users_by_id(self, after_id: int, limit: int) -> list[dict]:
        """Up to `limit` users in ID order after `after_id`: the full re-read walks the primary key."""
        rows = self._rows(f"SELECT {', '.join(USER_COLUMNS)} FROM b_user WHERE ID > %s ORDER BY ID LIMIT %s",
                          (int(after_id), int(limit)))
        return [dict(zip(USER_COLUMNS, r)) for r in rows]

    def users_by_ids(self, ids: list[int]) -> list[dict]:
        rows = self._in(f"SELECT {', '.join(USER_COLUMNS)} FROM b_user WHERE ID IN ({{ids}}) ORDER BY ID", ids)
        return [dict(zip(USER_COLUMNS, r)) for r in rows]

    def count_after_id(self, after_id: int) -> int:
        return int(self._value("SELECT COUNT(*) FROM b_user WHERE ID > %s", (int(after_id),)))

    def all_ids(self) -> set[int]:
        return {int(r[0]) for r in self._rows("SELECT ID FROM b_user")}

    def _in(self, sql: str, ids: list[int]) -> list[tuple]:
        if not ids:
            return []
        marks = ", ".join(["%s"] * len(ids))
        return self._rows(sql.format(ids=marks), tuple(int(i) for i in ids))

    def phones(self, ids: list[int]) -> dict[int, tuple[str, bool]]:
        """USER_ID -> (PHONE_NUMBER, confirmed) from b_user_phone_auth: the number Bitrix texts."""
        if "b_user_phone_auth" not in self.tables():
            return {}
        rows = self._in("SELECT USER_ID, PHONE_NUMBER, CONFIRMED FROM b_user_phone_auth WHERE USER_ID IN ({ids})", ids)
        return {int(u): (p, c == "Y") for u, p, c in rows if p}

    def socials(self, ids: list[int]) -> dict[int, list[tuple[str, str]]]:
        """USER_ID -> [(provider, subject)] from b_socialservices_user."""
        if "b_socialservices_user" not in self.tables():
            return {}
        rows = self._in("SELECT USER_ID, EXTERNAL_AUTH_ID, XML_ID FROM b_socialservices_user"
                        " WHERE USER_ID IN ({ids}) ORDER BY USER_ID, EXTERNAL_AUTH_ID, XML_ID", ids)
        out: dict[int, list] = {}
        for user_id, provider, subject in rows:
            if provider and subject:
                out.setdefault(int(user_id), []).append((str(provider), str(subject)))
        return out

    def user_groups(self, ids: list[int]) -> dict[int, list[int]]:
        if "b_user_group" not in self.tables():
            return {}
        out: dict[int, list] = {}
        for user_id, group_id in self._in("SELECT USER_ID, GROUP_ID FROM b_user_group WHERE USER_ID IN ({ids})", ids):
            out.setdefault(int(user_id), []).append(int(group_id))
        return out

    def group_policies(self) -> dict[int, str | None]:
        """GROUP_ID -> SECURITY_POLICY text (PHP-serialized), for every group."""
        if "b_group" not in self.tables():
            return {}
        return {int(g): p for g, p in self._rows("SELECT ID, SECURITY_POLICY FROM b_group")}

    def email_unique(self) -> bool | None:
        """b_option main/new_user_email_uniq_check: True for 'Y'; False for 'N' and when unset
        (Bitrix's default); None when the portal has no b_option table to ask."""
        if "b_option" not in self.tables():
            return None
        value = self._value("SELECT VALUE FROM b_option WHERE MODULE_ID = 'main' AND NAME = 'new_user_email_uniq_check'")
        return str(value or "N").strip().upper() == "Y"


def _after(after: tuple | None) -> tuple[str, tuple]:
    if after is None:
        return "", ()
    ts, user_id = after
    return "WHERE TIMESTAMP_X > %s OR (TIMESTAMP_X = %s AND ID > %s)", (ts, ts, int(user_id))


def _driver_errors(engine: str) -> tuple:
    if engine == "mysql":
        import pymysql

        return (pymysql.err.Error, OSError)
    import psycopg2

    return (psycopg2.Error, OSError)


def _connect(dsn: Dsn, password: str | None):
    """Connect with the engine's driver (imported here only); failures name the host and what failed."""
    if dsn.engine == "mysql":
        import pymysql

        try:
            return pymysql.connect(host=dsn.host, port=dsn.port, user=dsn.user, password=password or "",
                                   database=dsn.database, charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT,
                                   read_timeout=READ_TIMEOUT, autocommit=False)
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            what = {1045: "refused the sign-in", 1698: "refused the sign-in", 1044: "refused access to the database",
                    1049: "has no such database"}.get(code, "is unreachable")
            raise _unavailable(dsn, what, exc) from None
        except (pymysql.err.Error, OSError) as exc:
            raise _unavailable(dsn, "is unreachable", exc) from None
    import psycopg2

    try:
        conn = psycopg2.connect(host=dsn.host, port=dsn.port, user=dsn.user, password=password,
                                dbname=dsn.database, connect_timeout=CONNECT_TIMEOUT,
                                application_name="b24recover", client_encoding="UTF8")
        conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        return conn
    except psycopg2.OperationalError as exc:
        text = str(exc)
        what = ("refused the sign-in" if "authentication" in text or "password" in text
                else "has no such database" if "does not exist" in text else "is unreachable")
        raise _unavailable(dsn, what, exc) from None
    except psycopg2.Error as exc:
        raise _unavailable(dsn, "is unreachable", exc) from None
