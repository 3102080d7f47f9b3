"""Attaching an email, phone or social identity to an account (SPEC §1 social-only accounts).

By default a new email or phone stays *pending*: a control string bound to that exact address is
sent to it, and redeeming it (services.recovery) confirms the address and sets the password in
one step. A pending address is no login and gets no recovery messages until then; a second
pending address replaces the first. --no-verify attaches at once and is audited with the actor.
"""

from __future__ import annotations

from ..errors import B24Error
from ..store import tokens as token_store
from ..store import users as user_store
from . import identifiers as ids
from . import outbox, writeback
from .accounts import check_free, get_user
from .bitrix import refuse_external
from .context import Ctx
from .tokens import create, finish_delivery


def _what(ctx: Ctx, email: str | None, phone: str | None, social: str | None):
    """(channel, address, key) of what is to be linked; for --social, ("social", provider, subject)."""
    given = [x for x in (email, phone, social) if x is not None]
    if len(given) != 1:
        raise B24Error("usage", "give exactly one of --email, --phone or --social")
    if social is not None:
        return ("social", *ids.parse_social(social))
    if email is not None:
        return ("email", *ids.normalize_email(email))
    address = ids.normalize_phone(phone, ctx.settings.default_country)
    return "sms", address, address


def _checked(ctx: Ctx, conn, login: str, channel: str, address: str, key: str, no_verify: bool):
    """(the account, whether linking changes it), after every check a link makes first."""
    user = get_user(conn, login)
    refuse_external(user)
    if user["email" if channel == "email" else "phone"] == address:
        return user, False
    check_free(conn, email_key=key if channel == "email" else None,
               phone=address if channel == "sms" else None, owner_id=user["id"],
               unique_email=ctx.settings.accounts.unique_email)
    if not no_verify and user["blocked"]:
        raise B24Error("blocked", f"the account {user['login']} is blocked; unblock it before linking")
    return user, True


def _checked_social(conn, login: str, provider: str, subject: str):
    user = get_user(conn, login)
    refuse_external(user)
    owner = user_store.social_owner(conn, provider, subject)
    if owner is not None and owner["id"] != user["id"]:
        raise B24Error("conflict", f"{provider}:{subject} already belongs to the account {owner['login']!r}",
                       owner=owner["login"])
    return user, owner is None


def preview(ctx: Ctx, login: str, *, email: str | None = None, phone: str | None = None,
            social: str | None = None, no_verify: bool = False) -> dict:
    """`link --dry-run`: the checks `link` makes (read only), what it would do in the store, and
    the portal statements it would run now (the control string's CHECKWORD, for a pending email)."""
    from .writeback import enabled
    from .writeback import preview as portal_preview

    channel, address, key = _what(ctx, email, phone, social)
    conn = ctx.store.conn
    if channel == "social":
        user, changed = _checked_social(conn, login, address, key)
        local = [f"attach {address}:{key} to {user['login']}", "record the audit event link.social"] if changed \
            else [f"nothing: {address}:{key} is already linked to {user['login']}"]
        return portal_preview(ctx, login, None, local=local, note="a social identity stays b24recover's own: "
                              "nothing is written to the portal")
    user, changed = _checked(ctx, conn, login, channel, address, key, no_verify)
    if not changed:
        local, kind = [f"nothing: {address} is already linked to {user['login']}"], None
    elif no_verify:
        local = [f"attach {address} to {user['login']} at once, unconfirmed", "revoke its active control string",
                 "record the audit event link", "notify its other address, if it has one"]
        kind = None
    else:
        what = "a link by email" if channel == "email" else "an SMS code"
        local = [f"keep {address} pending for {user['login']}", f"send {what} to {address}, superseding any active "
                 "control string", "record the audit event link.request",
                 "when it is redeemed: confirm the address and set the password"
                 + (" (then written to the portal too)" if channel == "email" and enabled(ctx, user) else "")]
        kind = "checkword" if channel == "email" else None
    return portal_preview(ctx, login, kind, local=local,
                          note=None if changed and not no_verify else "nothing is written to the portal now")


def link(ctx: Ctx, login: str, *, email: str | None = None, phone: str | None = None,
         social: str | None = None, no_verify: bool = False) -> dict:
    channel, address, key = _what(ctx, email, phone, social)
    if channel == "social":
        return _link_social(ctx, login, address, key)
    field = "email" if channel == "email" else "phone"
    if not no_verify:  # what the portal could not take once confirmed: refused before a code goes out
        _refuse_portal_obstacles(ctx, get_user(ctx.store.conn, login), channel, address)
    issued = None
    notice = None
    with ctx.store.write() as conn:
        user, changed = _checked(ctx, conn, login, channel, address, key, no_verify)
        if not changed:
            return {"login": user["login"], "channel": channel, "address": address, "state": "linked",
                    "changed": False}
        if no_verify:
            changes = {field: address, "updated_at": ctx.now()}
            if channel == "email":
                changes["email_key"] = key
            user_store.update(conn, user["id"], changes)
            pending = user_store.pending(conn, user["id"])
            if pending is not None and pending["address_key"] == key:
                user_store.clear_pending(conn, user["id"])
            revoked = token_store.revoke_active(conn, user["id"], ctx.now(), "account_changed")
            ctx.audit(conn, "link", user["login"], channel=channel, address=address, verified=False,
                      no_verify=True, revoked=revoked)
            notice = notify_other_address(ctx, conn, user_store.by_id(conn, user["id"]), address)
            state = "linked"
        else:
            # Linking is an operator's deliberate act: it is audited, not throttled. The new control
            # string supersedes any earlier one (and so ends an earlier pending address); then
            # this address is the pending one.
            issued = create(ctx, conn, user, via=channel, ttl=None, purpose="link", address=address,
                            action="link.request", throttle=False)
            user_store.set_pending(conn, user["id"], channel, address, key, ctx.now())
            state = "pending"
    result = {"login": user["login"], "channel": channel, "address": address, "state": state, "changed": True}
    if issued is not None:
        view = finish_delivery(ctx, issued)
        result["control_string"] = {k: view[k] for k in ("id", "kind", "expires_at")}
        result["delivery"] = view.get("delivery")
    if notice is not None:
        outbox.deliver(ctx, notice)
    return result


def _refuse_portal_obstacles(ctx: Ctx, user, channel: str, address: str) -> None:
    refuse_external(user)  # its own refusal first
    if user["email" if channel == "email" else "phone"] != address:  # already linked: nothing to send
        writeback.refuse_link_obstacles(ctx, user, phone=address if channel == "sms" else None)


def _link_social(ctx: Ctx, login: str, provider: str, subject: str) -> dict:
    with ctx.store.write() as conn:
        user, changed = _checked_social(conn, login, provider, subject)
        if changed:
            user_store.add_social(conn, user["id"], provider, subject, ctx.now())
            ctx.audit(conn, "link.social", user["login"], provider=provider, subject=subject)
    return {"login": user["login"], "channel": "social", "address": f"{provider}:{subject}",
            "state": "linked", "changed": changed}


def mask(address: str) -> str:
    """Enough of an address to recognise it, not enough to harvest it."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return (local[:1] + "***@" + domain) if local else address
    return address[:4] + "***" + address[-2:]


def notify_other_address(ctx: Ctx, conn, user, confirmed: str) -> int | None:
    """After a confirmed link, tell the account's other known address (if any)."""
    if confirmed == user["email"] and user["phone"]:
        channel, other = "sms", user["phone"]
    elif confirmed == user["phone"] and user["email"]:
        channel, other = "email", user["email"]
    else:
        return None
    return outbox.enqueue(ctx, conn, user=user, channel=channel, template="address_linked", recipient=other,
                          params={"address": mask(confirmed), "changed_at": ctx.now()})
