"""Accounts: add, update, block, show, list, and the account view of the JSON contract."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import iso
from ..errors import B24Error
from ..store import audit as audit_store
from ..store import outbox as outbox_store
from ..store import tokens as token_store
from ..store import users as user_store
from . import identifiers as ids
from . import writeback
from .context import Ctx
from .passwords import is_legacy, scheme_of


@dataclass
class NewAccount:
    login: str
    email: str | None = None
    phone: str | None = None
    name: str = ""
    last_name: str = ""
    lang: str | None = None
    social: tuple[tuple[str, str], ...] = ()
    password_hash: str | None = None
    blocked: bool = False


def account_view(conn, row) -> dict:
    providers, pending = user_store.providers_and_pending(conn, row["id"])
    return {
        "login": row["login"],
        "name": row["name"],
        "last_name": row["last_name"],
        "email": row["email"],
        "phone": row["phone"],
        "lang": row["lang"],
        "state": "blocked" if row["blocked"] else "active",
        "has_password": row["password_hash"] is not None,
        "social": providers,
        "pending": [pending] if pending else [],
        "must_change_password": bool(row["must_change_password"]),
        "portal_id": row["portal_id"],
        "external": row["external"],
        "portal_synced_at": iso(row["portal_synced_at"]),
        "portal_gone": bool(row["portal_gone"]),
    }


def get_user(conn, login: str):
    row = user_store.by_login_key(conn, ids.login_key(login))
    if row is None:
        raise B24Error("not_found", f"no account with the login {login!r}")
    return row


def _who(row) -> str:
    return f"{row['login']!r}" + (f" ({row['external']})" if row["external"] else "")


def revoke_on_change(conn, user_id: int, changes: dict, now: int) -> int:
    """Bitrix: blocking an account, or changing its login, email, phone or password hash,
    invalidates its control string. Returns how many were revoked."""
    if changes.get("blocked"):
        return token_store.revoke_active(conn, user_id, now, "blocked")
    if {"login_key", "email_key", "phone", "password_hash"} & changes.keys():
        return token_store.revoke_active(conn, user_id, now, "account_changed")
    return 0


def check_free(conn, *, login_key: str | None = None, email_key: str | None = None,
               phone: str | None = None, owner_id: int | None = None, skeleton: str | None = None,
               external: str | None = None, unique_email: bool = True, portal_id: int | None = None) -> None:
    """An identifier already used by another account is a conflict that names that account;
    so is a login that looks like another account's (the same TR39 skeleton).

    Logins are unique per (login, external id), as in Bitrix; emails only while
    `[accounts] unique_email` is true (Bitrix's new_user_email_uniq_check)."""
    checks = (
        ("login", login_key, lambda c, k: user_store.by_login(c, k, external)),
        ("email", email_key if unique_email else None, user_store.by_email_key),
        ("phone", phone, user_store.by_phone),
        ("portal ID", portal_id, user_store.by_portal_id),
    )
    for what, value, finder in checks:
        if value is None:
            continue
        other = finder(conn, value)
        if other is not None and other["id"] != owner_id:
            raise B24Error(
                "conflict",
                f"the {what} is already used by the account {_who(other)}",
                owner=other["login"],
            )
    if skeleton is not None:
        other = user_store.by_login_skeleton(conn, skeleton, exclude_id=owner_id, external=external)
        if other is not None:
            raise B24Error(
                "conflict",
                f"the login looks like that of the account {other['login']!r} (the same characters "
                "to the eye, e.g. a Cyrillic letter for a Latin one)",
                hint="Choose a login that cannot be mistaken for an existing one.",
                owner=other["login"],
            )
    if email_key is not None or phone is not None:
        other = user_store.pending_owner(conn, email_key or phone)
        if other is not None and other["id"] != owner_id:
            raise B24Error(
                "conflict",
                f"the address is awaiting confirmation for the account {other['login']!r}",
                owner=other["login"],
            )


def prepare(ctx: Ctx, login: str, email: str | None, phone: str | None, name: str | None,
            last_name: str | None, lang: str | None, social: list[str] | tuple = (),
            password_hash: str | None = None, blocked: bool = False) -> NewAccount:
    """Validate and normalise the fields of a new account (no store access)."""
    socials = tuple(ids.parse_social(s) for s in social)
    if len(set(socials)) != len(socials):
        raise B24Error("invalid_input", "the same social identity is given twice")
    return NewAccount(
        login=ids.validate_login(login),
        email=ids.normalize_email(email)[0] if email else None,
        phone=ids.normalize_phone(phone, ctx.settings.default_country) if phone else None,
        name=ids.clean_text(name or "", "the name"),
        last_name=ids.clean_text(last_name or "", "the last name"),
        lang=ids.normalize_lang(lang),
        social=socials,
        password_hash=password_hash,
        blocked=blocked,
    )


def check_new(ctx: Ctx, conn, acc: NewAccount) -> None:
    """What stands in the way of adding this account (also `user add --dry-run`, read only)."""
    check_free(conn, login_key=ids.login_key(acc.login), email_key=ids.normalize_email(acc.email)[1] if acc.email
               else None, phone=acc.phone, skeleton=ids.login_skeleton(acc.login),
               unique_email=ctx.settings.accounts.unique_email)
    for provider, subject in acc.social:
        owner = user_store.social_owner(conn, provider, subject)
        if owner is not None:
            raise B24Error("conflict", f"{provider}:{subject} already belongs to the account {owner['login']!r}",
                           owner=owner["login"])


def preview_add(ctx: Ctx, acc: NewAccount, no_password: bool) -> dict:
    """`user add --dry-run`: the checks `user add` makes, read only, and what it would store. A
    new account is b24recover's own (no portal row), so nothing is written to the portal."""
    from .writeback import preview

    check_new(ctx, ctx.store.conn, acc)
    fields = [f"{k} {v}" for k, v in (("email", acc.email), ("phone", acc.phone), ("lang", acc.lang)) if v]
    fields += [f"social {p}:{s}" for p, s in acc.social]
    local = [f"add the account {acc.login}" + (f" ({', '.join(fields)})" if fields else ""),
             "with no password (social-only)" if no_password else "with the password asked for (not read in a dry run)",
             "record the audit event user.add"]
    return preview(ctx, None, None, typed_login=acc.login, local=local,
                   note="a new account is b24recover's own: nothing is written to the portal")


def insert_account(ctx: Ctx, conn, acc: NewAccount, action: str = "user.add", **details) -> int:
    email_key = ids.normalize_email(acc.email)[1] if acc.email else None
    key = ids.login_key(acc.login)
    skeleton = ids.login_skeleton(acc.login)
    check_new(ctx, conn, acc)
    now = ctx.now()
    user_id = user_store.insert(conn, {
        "login": acc.login, "login_key": key, "login_skeleton": skeleton, "email": acc.email, "email_key": email_key,
        "phone": acc.phone, "name": acc.name, "last_name": acc.last_name, "lang": acc.lang,
        "blocked": int(acc.blocked), "password_hash": acc.password_hash,
        "created_at": now, "updated_at": now,
        "password_changed_at": now if acc.password_hash else None,
    })
    for provider, subject in acc.social:
        user_store.add_social(conn, user_id, provider, subject, now)
    ctx.audit(conn, action, acc.login, email=acc.email, phone=acc.phone,
              social=[p for p, _ in acc.social], has_password=acc.password_hash is not None,
              blocked=acc.blocked, **details)
    return user_id


def require_password_or_social(has_password: bool, social) -> None:
    """An account without a password must sign in some other way: a social identity."""
    if not has_password and not social:
        raise B24Error("usage", "--no-password is only for social-only accounts: add --social PROVIDER:SUBJECT")


def add_user(ctx: Ctx, acc: NewAccount, password=None) -> dict:
    """Add one account; `password` is a credentials.NewPassword prepared before the lock."""
    require_password_or_social(password is not None, acc.social)
    if password is not None:
        acc.password_hash = password.hash
    with ctx.store.write() as conn:
        user_id = insert_account(ctx, conn, acc)
        if password is not None:
            from .credentials import history_size

            user_store.add_history(conn, user_id, password.digest, ctx.now(), keep=history_size(ctx))
        return account_view(conn, user_store.by_id(conn, user_id))


def update_user(ctx: Ctx, login: str, *, email: str | None = None, clear_email: bool = False,
                phone: str | None = None, clear_phone: bool = False, name: str | None = None,
                last_name: str | None = None, lang: str | None = None, rename: str | None = None) -> dict:
    changes: dict = {}
    if email is not None:
        changes["email"], changes["email_key"] = ids.normalize_email(email)
    if clear_email:
        changes["email"] = changes["email_key"] = None
    if phone is not None:
        changes["phone"] = ids.normalize_phone(phone, ctx.settings.default_country)
    if clear_phone:
        changes["phone"] = None
    if name is not None:
        changes["name"] = ids.clean_text(name, "the name")
    if last_name is not None:
        changes["last_name"] = ids.clean_text(last_name, "the last name")
    if lang is not None:
        changes["lang"] = ids.normalize_lang(lang)
    if rename is not None:
        changes["login"] = ids.validate_login(rename)
        changes["login_key"] = ids.login_key(changes["login"])
        changes["login_skeleton"] = ids.login_skeleton(changes["login"])
    if not changes:
        raise B24Error("usage", "nothing to change: give at least one option (see --help)")
    if changes.get("phone"):  # another portal user holding the number: refused before any change here
        writeback.refuse_portal_obstacle(ctx, get_user(ctx.store.conn, login), "phone",
                                         {"phone": changes["phone"], "confirmed": False})
    with ctx.store.write() as conn:
        row = get_user(conn, login)
        check_free(conn, login_key=changes.get("login_key"), email_key=changes.get("email_key"),
                   phone=changes.get("phone"), owner_id=row["id"], skeleton=changes.get("login_skeleton"),
                   external=row["external"], unique_email=ctx.settings.accounts.unique_email)
        actual = {k: v for k, v in changes.items() if row[k] != v}
        if not actual:
            return {**account_view(conn, row), "revoked": 0}
        actual["updated_at"] = ctx.now()
        user_store.update(conn, row["id"], actual)
        revoked = revoke_on_change(conn, row["id"], actual, ctx.now())
        if "email" in actual:
            writeback.queue(ctx, conn, row, "email", {"email": actual["email"]})
        if "phone" in actual:  # an operator's number, not proven by a code: CONFIRMED 'N' (docs/decisions.md)
            writeback.queue(ctx, conn, row, "phone", {"phone": actual["phone"], "confirmed": False})
        shown = {k: v for k, v in actual.items() if k in ("email", "phone", "name", "last_name", "lang", "login")}
        ctx.audit(conn, "user.update", actual.get("login", row["login"]), changes=shown,
                  old_login=row["login"] if "login" in actual else None, revoked=revoked)
        return {**account_view(conn, user_store.by_id(conn, row["id"])), "revoked": revoked}


def set_blocked(ctx: Ctx, login: str, blocked: bool) -> dict:
    with ctx.store.write() as conn:
        row = get_user(conn, login)
        revoked = 0
        if bool(row["blocked"]) != blocked:
            change = {"blocked": int(blocked), "updated_at": ctx.now()}
            user_store.update(conn, row["id"], change)
            revoked = revoke_on_change(conn, row["id"], change, ctx.now())
            writeback.queue(ctx, conn, row, "blocked", {"blocked": blocked})
            ctx.audit(conn, "user.block" if blocked else "user.unblock", row["login"], revoked=revoked)
        return account_view(conn, user_store.by_id(conn, row["id"]))


def list_users(ctx: Ctx, *, social_only: bool = False, blocked: bool = False, must_change: bool = False,
               limit: int | None = None):
    """Accounts by login; with `limit`, one more than asked so the caller can tell it was cut."""
    conn = ctx.store.conn
    rows = user_store.listing(conn, social_only=social_only, blocked=blocked, must_change=must_change,
                              limit=limit + 1 if limit else None)
    for row in rows:
        yield account_view(conn, row)


def count_users(ctx: Ctx, *, social_only: bool = False, blocked: bool = False, must_change: bool = False) -> int:
    return user_store.count_listing(ctx.store.conn, social_only=social_only, blocked=blocked, must_change=must_change)


def show_user(ctx: Ctx, login: str) -> dict:
    conn = ctx.store.conn
    row = get_user(conn, login)
    view = account_view(conn, row)
    now = ctx.now()
    tokens = token_store.recent(conn, row["id"], 10)
    messages = outbox_store.recent_for_user(conn, row["id"], 5)
    # query() answers oldest first; the view lists the newest first.
    events = audit_store.query(conn, login_key=row["login_key"], action=None, since=None, limit=10)[::-1]
    pending = user_store.pending(conn, row["id"])
    from .portal_views import portal_view
    from .views import control_string_view, event_view, message_view

    view.update({
        "id": row["id"],
        "social_identities": [{"provider": s["provider"], "subject": s["subject"]}
                              for s in user_store.socials(conn, row["id"])],
        "pending_addresses": [{"channel": pending["channel"], "address": pending["address"],
                               "since": iso(pending["created_at"])}] if pending else [],
        "profile_phone": row["profile_phone"],
        "portal_synced_at": iso(row["portal_synced_at"]),
        "portal_gone": bool(row["portal_gone"]),
        "password_scheme": scheme_of(row["password_hash"]),
        "legacy_hash": is_legacy(row["password_hash"]),
        "failed_attempts": row["failed_attempts"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "password_changed_at": iso(row["password_changed_at"]),
        "control_strings": [control_string_view(t, row["login"], now) for t in tokens],
        "messages": [message_view(m) for m in messages],
        "events": [event_view(e) for e in events],
        "portal": portal_view(conn, row),
    })
    return view
