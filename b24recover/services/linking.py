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


def link(ctx: Ctx, login: str, *, email: str | None = None, phone: str | None = None,
         social: str | None = None, no_verify: bool = False) -> dict:
    given = [x for x in (email, phone, social) if x is not None]
    if len(given) != 1:
        raise B24Error("usage", "give exactly one of --email, --phone or --social")
    if social is not None:
        return _link_social(ctx, login, *ids.parse_social(social))
    if email is not None:
        channel, (address, key) = "email", ids.normalize_email(email)
    else:
        channel = "sms"
        address = key = ids.normalize_phone(phone, ctx.settings.default_country)
    field = "email" if channel == "email" else "phone"
    if not no_verify:  # what the portal could not take once confirmed: refused before a code goes out
        _refuse_portal_obstacles(ctx, get_user(ctx.store.conn, login), channel, address)
    issued = None
    notice = None
    with ctx.store.write() as conn:
        user = get_user(conn, login)
        refuse_external(user)
        if user[field] == address:
            return {"login": user["login"], "channel": channel, "address": address, "state": "linked",
                    "changed": False}
        check_free(conn, email_key=key if channel == "email" else None,
                   phone=address if channel == "sms" else None, owner_id=user["id"],
                   unique_email=ctx.settings.accounts.unique_email)
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
            if user["blocked"]:
                raise B24Error("blocked", f"the account {user['login']} is blocked; unblock it before linking")
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
        user = get_user(conn, login)
        refuse_external(user)
        owner = user_store.social_owner(conn, provider, subject)
        if owner is not None and owner["id"] != user["id"]:
            raise B24Error("conflict", f"{provider}:{subject} already belongs to the account {owner['login']!r}",
                           owner=owner["login"])
        changed = owner is None
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
