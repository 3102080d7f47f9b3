"""[portal] dsn: `mysql://USER@HOST[:PORT]/DB` or `postgresql://USER@HOST[:PORT]/DB`.

The password never lives in the DSN (it would end up in the config file, in `config show`, in
error messages): it comes from the environment variable named by [portal] password_env. A DSN
that holds one is refused without ever repeating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..errors import B24Error

ENGINES = {"mysql": ("mysql", 3306), "mariadb": ("mysql", 3306),
           "postgresql": ("postgresql", 5432), "postgres": ("postgresql", 5432)}


@dataclass(frozen=True)
class Dsn:
    engine: str  # "mysql" (MySQL and MariaDB) or "postgresql"
    user: str
    host: str
    port: int
    database: str

    @property
    def where(self) -> str:
        """host:port/database, for messages (never a password: the DSN has none)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.database}"


def _bad(what: str) -> B24Error:
    return B24Error("config_invalid", f"[portal] dsn: {what}",
                    hint='Write it as "mysql://USER@HOST[:PORT]/DB" or "postgresql://USER@HOST[:PORT]/DB".')


def parse_dsn(text: str) -> Dsn:
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        # Never echo the text: a malformed DSN may still hold a password.
        raise _bad("not a valid URL (bad host or port)") from None
    if parts.password is not None or (parts.username is not None and ":" in (parts.netloc.rpartition("@")[0])):
        raise B24Error("config_invalid", "[portal] dsn contains a password; it was not used and is not shown",
                       hint="Remove the password from the DSN, put it in an environment variable and name that "
                            "variable in [portal] password_env.")
    if parts.scheme.lower() not in ENGINES:
        raise _bad(f"unknown engine {parts.scheme!r}; use mysql:// (MySQL, MariaDB) or postgresql://")
    engine, default_port = ENGINES[parts.scheme.lower()]
    if parts.query or parts.fragment:
        raise _bad("options after '?' or '#' are not supported")
    if not parts.username:
        raise _bad("no user name (USER@HOST)")
    if not parts.hostname:
        raise _bad("no host")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise _bad("name one database after the host (/DB)")
    return Dsn(engine=engine, user=unquote(parts.username), host=parts.hostname, port=port or default_port,
               database=database)
