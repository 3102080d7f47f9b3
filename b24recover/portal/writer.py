"""Writing to the portal's database: the only statements b24recover ever runs there (SPEC §6).

One query set for both engines (PostgreSQL folds the unquoted names to Bitrix's lower-case ones;
both know LOCALTIMESTAMP, the database's own clock, in the zone Bitrix compares CHECKWORD_TIME
in). Each write-back is one portal transaction: all its statements or none. Values that are
secrets' hashes are masked when the statements are shown (`--dry-run`).
"""

from __future__ import annotations

import hashlib

from ..errors import B24Error
from .adapter import Portal, _connect, _driver_errors, password_from_env
from .dsn import parse_dsn

MASK = "'$6$…' (masked)"

# Tables written, and how: docs/bitrix.md turns this into the GRANTs.
WRITTEN = {"b_user": "UPDATE", "b_user_password": "INSERT", "b_user_stored_auth": "DELETE",
           "b_user_auth_action": "INSERT", "b_user_phone_auth": "INSERT, DELETE"}
def touched() -> dict:
    """What `write = true` writes, table -> [what]: shown by `portal status`, and the GRANTs."""
    return {"b_user": ["UPDATE PASSWORD, PASSWORD_EXPIRED, LOGIN_ATTEMPTS, CHECKWORD, CHECKWORD_TIME, BLOCKED, EMAIL,"
                       " TIMESTAMP_X, EXTERNAL_AUTH_ID ('socservices' -> '' with a social-only account's first password)"],
            "b_user_phone_auth": ["DELETE the user's row, INSERT (USER_ID, PHONE_NUMBER, CONFIRMED)"],
            "b_user_password": ["INSERT (USER_ID, PASSWORD, DATE_CHANGE)"],
            "b_user_stored_auth": ["DELETE the user's rows"],
            "b_user_auth_action": ["INSERT (USER_ID, PRIORITY=100, ACTION='logout', ACTION_DATE)"]}


READ = ("b_user", "b_user_phone_auth", "b_socialservices_user", "b_user_group", "b_group", "b_option")


def checkword_digest(value: str | None) -> str:
    """What b24recover keeps of a CHECKWORD it wrote: enough to tell it from another one."""
    return hashlib.sha256((value or "").encode("utf-8")).hexdigest()


class Statement:
    def __init__(self, sql: str, params: tuple, secret: tuple = ()):
        self.sql, self.params, self.secret = sql, params, secret  # secret: indexes of masked params

    def shown(self) -> str:
        parts = self.sql.split("%s")
        out = parts[0]
        for i, part in enumerate(parts[1:]):
            value = self.params[i]
            out += (MASK if i in self.secret else "NULL" if value is None else repr(value)) + part
        return out


# The one per-engine difference: a SHA-256 of CHECKWORD, to clear only the value b24recover wrote.
_DIGEST = {"mysql": "SHA2(CHECKWORD, 256)", "postgresql": "encode(sha256(convert_to(CHECKWORD, 'UTF8')), 'hex')"}


def statements(kind: str, payload: dict, portal_id: int, engine: str = "mysql") -> list[Statement]:
    """The statements of one write-back (clearing a checkword is conditional on it being ours)."""
    pid = int(portal_id)
    if kind == "password":
        # A social-only account's first password: Bitrix's password sign-in (CUser::LoginInternal)
        # matches only rows whose EXTERNAL_AUTH_ID is empty, so the row becomes internal; its
        # b_socialservices_user rows stay, and the social sign-in with them (docs/bitrix.md).
        first = [Statement("UPDATE b_user SET EXTERNAL_AUTH_ID = '' WHERE ID = %s AND EXTERNAL_AUTH_ID = 'socservices'",
                           (pid,))] if payload.get("first") else []
        return [
            Statement("UPDATE b_user SET PASSWORD = %s, PASSWORD_EXPIRED = %s, LOGIN_ATTEMPTS = 0, CHECKWORD = %s,"
                      " CHECKWORD_TIME = LOCALTIMESTAMP, TIMESTAMP_X = LOCALTIMESTAMP WHERE ID = %s",
                      (payload["password"], "Y" if payload["expired"] else "N", payload["checkword"], pid), (0, 2)),
            Statement("INSERT INTO b_user_password (USER_ID, PASSWORD, DATE_CHANGE) VALUES (%s, %s, LOCALTIMESTAMP)",
                      (pid, payload["password"]), (1,)),
            Statement("DELETE FROM b_user_stored_auth WHERE USER_ID = %s", (pid,)),
            Statement("INSERT INTO b_user_auth_action (USER_ID, PRIORITY, ACTION, ACTION_DATE)"
                      " VALUES (%s, 100, 'logout', LOCALTIMESTAMP)", (pid,)),
        ] + first
    if kind == "checkword":
        # As Bitrix's own SendPassword: the checkword and its time; TIMESTAMP_X kept (MySQL would
        # otherwise move it by ON UPDATE).
        return [Statement("UPDATE b_user SET CHECKWORD = %s, CHECKWORD_TIME = LOCALTIMESTAMP, TIMESTAMP_X = TIMESTAMP_X"
                          " WHERE ID = %s", (payload["checkword"], pid), (0,))]
    if kind == "clear_checkword":
        return [Statement("UPDATE b_user SET CHECKWORD = NULL, TIMESTAMP_X = TIMESTAMP_X"
                          f" WHERE ID = %s AND {_DIGEST[engine]} = %s", (pid, payload["digest"]))]
    if kind == "blocked":
        return [Statement("UPDATE b_user SET BLOCKED = %s, TIMESTAMP_X = LOCALTIMESTAMP WHERE ID = %s",
                          ("Y" if payload["blocked"] else "N", pid))]
    if kind == "email":
        return [Statement("UPDATE b_user SET EMAIL = %s, TIMESTAMP_X = LOCALTIMESTAMP WHERE ID = %s",
                          (payload["email"], pid))]
    if kind == "phone":
        # As Bitrix's CUser::Update: a new number replaces the user's row (its code secret and
        # tries go with the old number), no number deletes it.
        drop = Statement("DELETE FROM b_user_phone_auth WHERE USER_ID = %s", (pid,))
        if payload["phone"] is None:
            return [drop]
        return [drop, Statement("INSERT INTO b_user_phone_auth (USER_ID, PHONE_NUMBER, CONFIRMED) VALUES (%s, %s, %s)",
                                (pid, payload["phone"], "Y" if payload["confirmed"] else "N"))]
    raise ValueError(f"unknown write-back kind {kind!r}")


# What stands in the way of a write-back on the portal's side (read before the local change, and
# again inside the write's transaction): the unique keys a database error would otherwise name.
_PHONE_HOLDER = "SELECT USER_ID FROM b_user_phone_auth WHERE PHONE_NUMBER = %s AND USER_ID <> %s"
_NAMESAKE = ("SELECT o.ID FROM b_user u JOIN b_user o ON o.LOGIN = u.LOGIN AND o.ID <> u.ID"
             " WHERE u.ID = %s AND u.EXTERNAL_AUTH_ID = 'socservices'"
             " AND (o.EXTERNAL_AUTH_ID IS NULL OR o.EXTERNAL_AUTH_ID = '')")


def phone_taken(number: str, holder) -> str:
    return (f"the portal's user ID {holder} already has the sign-in number {number}, and b_user_phone_auth holds "
            "each number once")


def login_taken(holder) -> str:
    return (f"the portal's internal user ID {holder} already has this login, so this social-only account cannot "
            "start signing in with a password under it (Bitrix logins are unique among internal accounts)")


def obstacle(kind: str, payload: dict, portal_id: int, query) -> str | None:
    """Why the portal would refuse this write-back, or None; `query(sql, params)` returns rows."""
    if kind == "phone" and payload["phone"] is not None:
        rows = query(_PHONE_HOLDER, (payload["phone"], int(portal_id)))
        return phone_taken(payload["phone"], rows[0][0]) if rows else None
    if kind == "password" and payload.get("first"):
        rows = query(_NAMESAKE, (int(portal_id),))
        return login_taken(rows[0][0]) if rows else None
    return None


def read_obstacle(settings, kind: str, payload: dict, portal_id: int) -> str | None:
    """`obstacle`, read now on a read-only connection (a table the portal lacks stands in no way)."""
    with Portal.open(settings) as portal:
        if kind == "phone" and "b_user_phone_auth" not in portal.tables():
            return None
        return obstacle(kind, payload, portal_id, portal._rows)


def read_checkword(settings, portal_id: int) -> tuple[bool, str | None]:
    """(found, CHECKWORD) of one portal row, read now (read-only)."""
    with Portal.open(settings) as portal:
        rows = portal._rows("SELECT CHECKWORD FROM b_user WHERE ID = %s", (int(portal_id),))
    return (True, rows[0][0]) if rows else (False, None)


def _gone(portal_id: int) -> B24Error:
    return B24Error("portal_write_failed", f"the portal has no user with ID {portal_id}",
                    hint="Run b24recover portal sync --full: the account may be gone from the portal.")


class PortalWriter:
    """A read-write connection to the portal; each `apply` is one transaction."""

    def __init__(self, portal: Portal):
        self.portal = portal

    @classmethod
    def open(cls, settings) -> "PortalWriter":
        if not settings.portal.dsn:
            raise B24Error("config_invalid", "no portal database is configured ([portal] dsn is empty)")
        dsn = parse_dsn(settings.portal.dsn)
        conn = _connect(dsn, password_from_env(settings.portal.password_env))
        portal = Portal(dsn, conn, settings.portal.charset)
        if dsn.engine == "postgresql":
            portal._run(conn.rollback, "failed")
            portal._run(lambda: conn.set_session(readonly=False, isolation_level="READ COMMITTED"), "failed")
        return cls(portal)

    def close(self) -> None:
        self.portal.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def apply(self, kind: str, payload: dict, portal_id: int) -> None:
        """Run the write-back's statements in one transaction; raises portal_write_failed (the
        portal's reason) or portal_unavailable, having rolled back."""
        conn, errors = self.portal.conn, _driver_errors(self.portal.engine)
        try:
            with conn.cursor() as cur:
                if self._already(cur, kind, payload, portal_id):
                    conn.rollback()
                    return
                if kind == "phone":  # no b_user statement to count: the row must exist
                    cur.execute("SELECT ID FROM b_user WHERE ID = %s FOR UPDATE", (int(portal_id),))
                    if cur.fetchone() is None:
                        raise _gone(portal_id)

                def query(sql, params):
                    cur.execute(sql, params)
                    return cur.fetchall()

                reason = obstacle(kind, payload, portal_id, query)
                if reason is not None:
                    raise B24Error("portal_write_failed", f"the portal cannot take the write-back: {reason}",
                                   hint="Resolve it in the portal (or change the account here), then run "
                                        "b24recover portal push.")
                for number, st in enumerate(statements(kind, payload, portal_id, self.portal.engine)):
                    cur.execute(st.sql, st.params)
                    if number == 0 and cur.rowcount != 1 and kind not in ("clear_checkword", "phone"):
                        raise _gone(portal_id)
            conn.commit()
        except BaseException as exc:
            try:
                conn.rollback()
            except errors:
                pass
            if isinstance(exc, errors):
                from .adapter import _reason

                raise B24Error("portal_write_failed", f"the portal refused the write-back: {_reason(exc)}") from None
            raise

    @staticmethod
    def _already(cur, kind: str, payload: dict, portal_id: int) -> bool:
        """Whether the portal already holds this write (it was applied, and the crash came before
        b24recover recorded it): the row is locked and nothing is applied twice."""
        if kind not in ("password", "checkword"):
            return False
        cur.execute("SELECT PASSWORD, CHECKWORD FROM b_user WHERE ID = %s FOR UPDATE", (int(portal_id),))
        found = cur.fetchone()
        if found is None:
            return False
        return found[0] == payload["password"] if kind == "password" else found[1] == payload["checkword"]

    def row(self, portal_id: int) -> dict | None:
        """The fields the two-writer checks compare, read now."""
        cols = ("ID", "LOGIN", "EMAIL", "ACTIVE", "BLOCKED", "PASSWORD", "CHECKWORD", "CHECKWORD_TIME")
        rows = self.portal._rows(f"SELECT {', '.join(cols)} FROM b_user WHERE ID = %s", (int(portal_id),))
        self.portal._run(self.portal.conn.rollback, "failed")
        return dict(zip(cols, rows[0])) if rows else None
