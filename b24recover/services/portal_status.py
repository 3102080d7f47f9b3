"""`portal status`: the portal database as b24recover sees it, and what the last sync left."""

from __future__ import annotations

from ..clock import iso
from ..errors import B24Error
from ..store import portal as portal_store
from .context import Ctx

# The character sets a database reports, as the [portal] charset they mean.
_CHARSETS = {"utf8mb4": "utf-8", "utf8": "utf-8", "utf8mb3": "utf-8", "utf-8": "utf-8",
             "cp1251": "windows-1251", "win1251": "windows-1251", "windows-1251": "windows-1251"}


def charset_name(db_charset: str | None) -> str | None:
    return _CHARSETS.get((db_charset or "").lower())


def status(ctx: Ctx) -> tuple[dict, B24Error | None]:
    """The status object, and the error that made the portal unreachable (None when reachable).

    `pending` and `failed` count the write-back queue (SPEC §6); `writes` says what `write = true`
    touches (tables and columns)."""
    from ..portal.writer import touched
    from ..store import portal_writes
    from ..portal.adapter import Portal
    from ..portal.dsn import parse_dsn

    settings = ctx.settings
    if not settings.portal.dsn:
        raise B24Error("config_invalid", "no portal database is configured ([portal] dsn is empty)",
                       hint='Set [portal] dsn = "mysql://USER@HOST/DB" (or postgresql://…) and password_env.')
    dsn = parse_dsn(settings.portal.dsn)
    conn = ctx.store.conn
    state = portal_store.state(conn)
    local = portal_store.counts(conn)
    out = {
        "reachable": False, "engine": dsn.engine, "version": None, "charset": None,
        "accounts": None, "last_sync": iso(state["last_sync_at"]), **portal_writes.counts(conn),
        "writes": touched(),
        "portal": f"{dsn.engine}://{dsn.user}@{dsn.where}",
        "configured_charset": settings.portal.charset, "charset_matches": None,
        "write": settings.portal.write,
        "last_full_sync": iso(state["last_full_at"]),
        "sync_interrupted": state["run_mode"] is not None,
        "cursor": state["cursor_ts"],
        "synced_accounts": local["accounts"], "gone": local["gone"], "refused": local["refused"],
        "email_unique": None if state["email_unique"] is None else bool(state["email_unique"]),
    }
    try:
        with Portal.open(settings) as portal:
            portal.tables()
            charset = portal.db_charset()
            out.update(reachable=True, version=portal.version(), charset=charset,
                       accounts=portal.count_users())
            rule = portal.email_unique()  # the rule the next sync applies (a portal without b_option: the config's)
            out["email_unique"] = settings.accounts.unique_email if rule is None else rule
            out["charset_matches"] = charset_name(charset) == settings.portal.charset
    except B24Error as exc:
        if exc.code != "portal_unavailable":
            raise
        return out, exc
    return out, None
