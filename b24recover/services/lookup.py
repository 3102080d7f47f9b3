"""Find accounts by login, email, phone or name (the "forgot your login?" question)."""

from __future__ import annotations

from ..errors import B24Error
from ..store import users as user_store
from . import identifiers as ids
from .accounts import account_view
from .context import Ctx

BY = ("auto", "login", "email", "phone", "name")


def lookup(ctx: Ctx, query: str, by: str = "auto", limit: int = 50) -> list[dict]:
    """Matching accounts; a name search returns up to `limit` + 1 (0: all), so a caller can tell it was cut."""
    if by not in BY:
        raise B24Error("usage", f"--by must be one of {', '.join(BY)}")
    query = ids.clean_text(query, "the query", max_len=320, allow_empty=False).strip()
    conn = ctx.store.conn
    rows: dict[int, object] = {}

    def add(row):
        if row is not None:
            rows.setdefault(row["id"], row)

    if by in ("auto", "email") and ids.looks_like_email(query):
        key = ids.email_lookup_key(query)
        if key:
            for row in user_store.all_by_email_key(conn, key):  # several when emails may repeat
                add(row)
        elif by == "email":
            raise B24Error("invalid_email", f"{query!r} is not a valid email address")
    elif by == "email":
        raise B24Error("invalid_email", f"{query!r} is not an email address")
    if by in ("auto", "phone"):
        key = ids.phone_lookup_key(query, ctx.settings.default_country)
        if key:
            add(user_store.by_phone(conn, key))
        elif by == "phone":
            raise B24Error("invalid_phone", f"{query!r} is not a phone number")
    if by in ("auto", "login"):
        add(user_store.by_login_key(conn, ids.login_key(query)))
    if by == "name" or (by == "auto" and not rows):
        for row in user_store.by_name(conn, query, limit + 1 if limit else None):  # every word starts a word of the name
            add(row)
    if not rows:
        raise B24Error("not_found", f"no account matches {query!r}",
                       hint="Try another spelling, the phone with its country code, or --by name.")
    return [account_view(conn, r) for r in rows.values()]
