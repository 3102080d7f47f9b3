"""What `--db` names: a SQLite file path, or a PostgreSQL store as `postgresql://USER@HOST[:PORT]/DBNAME`
(SPEC §2, §7). Plain string work only: no driver is imported here (start-up time)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import B24Error

SCHEMES = ("postgresql://", "postgres://")


def is_url(db) -> bool:
    return isinstance(db, StoreURL) or str(db).lower().startswith(SCHEMES)


class StoreURL(str):
    """A PostgreSQL store. As a string it is the display form, which never holds a password
    (a URL with one is refused before this object exists)."""

    engine = "postgresql"

    def __new__(cls, text: str):
        params = _parse(text)
        port = f":{params['port']}" if "port" in params else ""
        obj = super().__new__(cls, f"postgresql://{params['user']}@{params['host']}{port}/{params['dbname']}")
        obj.params = params
        return obj

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    @property
    def host(self) -> str:
        return self.params["host"]


def _refuse(message: str) -> B24Error:
    return B24Error("usage", message, hint="Write --db postgresql://USER@HOST[:PORT]/DBNAME (or B24RECOVER_DB).")


def _parse(text: str) -> dict:
    """libpq connection parameters of a store URL; the password, if any, is never repeated."""
    parts = urlsplit(text)
    # urlsplit keeps the userinfo in netloc; look for a password before anything else can echo it.
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if ":" in userinfo or "password" in parts.query.lower():
        raise B24Error(
            "usage", "the store URL holds a password, which would sit in argv, shell history and process lists",
            hint="Remove it from the URL and put it in PGPASSWORD or ~/.pgpass (mode 0600).")
    if parts.query or parts.fragment:
        raise _refuse("the store URL takes no parameters after the database name")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise _refuse("the store URL has a bad port") from None
    user = unquote(userinfo)
    dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not user or not host or not dbname or "/" in dbname:
        raise _refuse("the store URL must name the user, the host and the database")
    params = {"user": user, "host": host, "dbname": dbname}
    if port is not None:
        params["port"] = port
    return params


def location(db: str):
    """A StoreURL for a PostgreSQL URL, else the SQLite file Path."""
    if isinstance(db, (StoreURL, Path)):
        return db
    return StoreURL(db) if is_url(db) else Path(db)


def safe_name(db) -> str:
    """How to name the store in a message: a URL without any password it might hold."""
    if isinstance(db, StoreURL) or not is_url(db):
        return str(db)
    try:
        return str(StoreURL(str(db)))
    except B24Error:
        return "the PostgreSQL store named by --db"
