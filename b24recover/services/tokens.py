"""Control strings: issue (operator), request (portal), check, revoke, list.

At most one control string per account is active (a partial unique index enforces it); a new
one supersedes the old. Throttling: one per `resend_interval` and `daily_limit` per 24 h per
account; operators may pass it with --force, which is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import iso
from ..errors import B24Error
from ..store import tokens as token_store
from ..store import users as user_store
from . import guessing
from . import identifiers as ids
from . import outbox, writeback
from . import secrets as secret_codec
from .accounts import get_user
from .bitrix import refuse_external
from .context import Ctx
from .guessing import incorrect, refusal  # noqa: F401  (re-exported)
from .portal_views import require_in_portal
from .views import control_string_view

VIA = ("email", "sms", "qr", "none")
# `token request` answers this long after it began, whatever happened; its own work (look-up,
# control string, queued message, audit) takes a few ms, delivery is detached (cli/portal.py).
REQUEST_FLOOR = 0.05
UNIFORM_ANSWER = ("If an account matches, a message with instructions has been sent to the address on file. "
                  "Only the most recent message works.")


@dataclass
class Issued:
    view: dict
    secret: str | None          # only for qr/none, to be shown once
    link: str | None
    message_id: int | None


def throttled_until(ctx: Ctx, conn, user_id: int) -> tuple[int, str] | None:
    """When the account may get its next control string, if it may not now: (epoch, why)."""
    now, t = ctx.now(), ctx.settings.tokens
    last = token_store.last_created(conn, user_id)
    if last is not None and now - last < t.resend_interval:
        return last + t.resend_interval, f"a control string was sent {now - last} s ago"
    count, oldest = token_store.count_since(conn, user_id, now - 86400)
    if count >= t.daily_limit:
        return oldest + 86400, f"{count} control strings were sent in the last 24 h (limit {t.daily_limit})"
    return None


def _throttle(ctx: Ctx, conn, user_id: int) -> None:
    until = throttled_until(ctx, conn, user_id)
    if until is not None:
        retry, why = until
        raise B24Error("throttled", f"{why}; the next one can be sent at {iso(retry)}",
                       hint=f"Wait until {iso(retry)}, or pass --force (audited).", retry_after=iso(retry))


def recipient_for(conn, user, channel: str) -> str:
    """The confirmed address for a channel, or the reason there is none."""
    field, code = ("email", "no_email") if channel == "email" else ("phone", "no_phone")
    if user[field]:
        return user[field]
    pending = user_store.pending(conn, user["id"])
    if pending is not None and pending["channel"] == channel:
        raise B24Error("pending_link", f"the {field} {pending['address']} of {user['login']} is awaiting confirmation",
                       hint="It becomes usable once the control string sent to it is redeemed; to send a new one: "
                            f"b24recover link {user['login']} --{field} {pending['address']}")
    what = "social-network-only account" if user["password_hash"] is None else "account"
    raise B24Error(code, f"the {what} {user['login']} has no {field} on file",
                   hint=f"Link one first: b24recover link {user['login']} --{field} {'ADDRESS' if field == 'email' else 'NUMBER'}")


def prepare(ctx: Ctx, users, via: str) -> dict:
    """Control strings drawn, and their portal checkwords hashed, before the write lock (the
    hash is slow): user id -> (control string, Bitrix hash). Only links of write-back accounts."""
    if via == "sms":
        return {}
    out = {}
    for user in users:
        if user is not None and writeback.enabled(ctx, user):
            secret = secret_codec.new_control_string()
            out[user["id"]] = (secret, writeback.checkword_hash(ctx, secret))
    return out


def create(ctx: Ctx, conn, user, *, via: str, ttl: int | None, purpose: str = "recovery",
           address: str | None = None, force: bool = False, action: str = "token.issue",
           throttle: bool = True, prepared: dict | None = None) -> Issued:
    """Issue a control string inside the caller's transaction and queue its message (and, for a
    link with write-back on, the portal's CHECKWORD: see `prepare`)."""
    require_in_portal(user)
    refuse_external(user)
    if user["blocked"]:
        raise B24Error("blocked", f"the account {user['login']} is blocked; blocked accounts get no control strings")
    guessing.check_may_issue(ctx, conn, user)
    channel = via
    if address is None and via in ("email", "sms"):
        address = recipient_for(conn, user, via)
    if throttle and not force:
        _throttle(ctx, conn, user["id"])
    kind = "code" if via == "sms" else "link"
    t = ctx.settings.tokens
    ttl = ttl if ttl is not None else (t.code_ttl if kind == "code" else t.link_ttl)
    portal_write = kind == "link" and writeback.enabled(ctx, user)
    ready = (prepared or {}).get(user["id"]) if portal_write else None
    if portal_write:
        ttl = writeback.link_ttl(ctx, conn, user, ttl)
        if ready is None:  # the account was not known before the lock (rare): hash it here
            secret = secret_codec.new_control_string()
            ready = (secret, writeback.checkword_hash(ctx, secret))
    if ready is not None:
        secret = ready[0]
    else:
        secret = secret_codec.new_code() if kind == "code" else secret_codec.new_control_string()
    now = ctx.now()
    superseded = token_store.supersede_active(conn, user["id"], now)
    token_id = token_store.insert(
        conn, user_id=user["id"], kind=kind, channel=channel, purpose=purpose, address=address,
        secret_hash=secret_codec.digest(kind, secret, user["id"], ctx.key()), now=now, expires_at=now + ttl,
    )
    if portal_write:
        writeback.queue(ctx, conn, user, "checkword", {"checkword": ready[1], "control_string_id": token_id})
    message_id = None
    if via in ("email", "sms"):
        if purpose == "link":
            template = "link_confirm" if kind == "link" else "link_code"
        else:
            template = "recovery_link" if kind == "link" else "sms_code"
        message_id = outbox.enqueue(ctx, conn, user=user, channel=via, template=template, recipient=address,
                                    params={"ttl_seconds": ttl, "expires_at": now + ttl, "address": address},
                                    token_id=token_id, secret=secret)
    ctx.audit(conn, action, user["login"], control_string=token_id, kind=kind, channel=channel, purpose=purpose,
              recipient=address, ttl=ttl, superseded=superseded, forced=force, message=message_id)
    view = control_string_view(token_store.by_id(conn, token_id), user["login"], now)
    shown = secret if via in ("qr", "none") else None
    link = outbox.recovery_link(ctx, login=user["login"], lang=outbox.lang_for(ctx, user),
                                control_string=secret) if shown else None
    return Issued(view=view, secret=shown, link=link, message_id=message_id)


def finish_delivery(ctx: Ctx, issued: Issued) -> dict:
    if issued.message_id is None:
        return issued.view
    result = outbox.deliver(ctx, issued.message_id)
    issued.view["delivery"] = {"status": result["status"], "recipient": result["recipient"]}
    if result["error"]:
        issued.view["delivery"]["error"] = result["error"]
    return issued.view


def issue(ctx: Ctx, login: str, via: str, ttl: int | None = None, force: bool = False) -> Issued:
    """`token issue`: an operator sends a control string. Delivery happens after the commit."""
    if via not in VIA:
        raise B24Error("usage", f"--via must be one of {', '.join(VIA)}")
    if ttl is not None and not 0 < ttl <= 30 * 86400:
        raise B24Error("usage", "--ttl must be between 1 s and 30 d")
    user = writeback.reconcile(ctx, get_user(ctx.store.conn, login))
    prepared = prepare(ctx, [user], via)
    with ctx.store.write() as conn:
        user = get_user(conn, login)
        issued = create(ctx, conn, user, via=via, ttl=ttl, force=force, prepared=prepared)
    writeback.flush()  # the portal's CHECKWORD first, so the link works when the message arrives
    finish_delivery(ctx, issued)
    if issued.link:
        issued.view["link"] = issued.link
    return issued


def _resolve_identifier(ctx: Ctx, conn, identifier: str) -> tuple[list, str]:
    """(accounts, channel) for what a person typed into "Forgot your password?". An email names
    every account that has it: several when `[accounts] unique_email = false`, and each then
    gets its own control string (Bitrix's SendPassword does the same)."""
    text = identifier.strip()
    if ids.looks_like_email(text):
        key = ids.email_lookup_key(text)
        users = user_store.all_by_email_key(conn, key) if key else []
        if not users:
            user = user_store.by_login_key(conn, ids.login_key(text))
            users = [user] if user is not None else []
        return users, "email"
    phone = ids.phone_lookup_key(text, ctx.settings.default_country) if ids.looks_like_phone(text) else None
    if phone:
        user = user_store.by_phone(conn, phone)
        if user is not None:
            return [user], "sms"
    user = user_store.by_login_key(conn, ids.login_key(text))
    return ([user] if user is not None else []), "email"


def preview_request(ctx: Ctx, identifier: str) -> dict:
    """`token request --dry-run`: the same plan for every identifier. No account is looked up,
    so the dry run says no more than the answer does (docs/decisions.md); `lookup` and
    `diagnose` are the operator's tools for which account it would reach, and why not."""
    try:
        identifier = ids.clean_text(identifier, "the identifier", max_len=320, allow_empty=False)
    except B24Error:
        identifier = None
    local = ["find the accounts the identifier names (email, phone number or login); none is looked up in a "
             "dry run", "for each that may get one: a new control string superseding its active one (an SMS code "
             "when a phone number matched, else a link by email), its message in the outbox, the audit event "
             "token.request; for any other: the audit event token.request.refused with the reason",
             f"answer, whatever matched: {UNIFORM_ANSWER}",
             "to see which account it would reach: b24recover lookup IDENTIFIER, then b24recover diagnose LOGIN"]
    plan = writeback.preview(ctx, None, "checkword", local=local)
    plan["identifier"] = identifier
    if plan["statements"]:
        plan["note"] = "for a link to an account read from the portal; an SMS code writes nothing to the portal"
    return plan


def accepts_after_answer(ctx: Ctx) -> bool:
    """Whether `token request` run as a command does all its work after answering, in the
    detached process: with portal write-back on, accepting re-reads the portal and writes the
    CHECKWORD when an account matched, round trips an unmatched request does not make and the
    answer's time would show (docs/decisions.md). Decided by the settings alone, never by the
    identifier, so every request takes the same path."""
    return bool(ctx.settings.portal.write and ctx.settings.portal.dsn)


def answer() -> dict:
    return {"status": "accepted", "message": UNIFORM_ANSWER}


def request(ctx: Ctx, identifier: str) -> dict:
    """`token request` for library callers: accept, then deliver in this process."""
    answer, messages = accept_request(ctx, identifier)
    for message_id in messages:
        outbox.deliver(ctx, message_id)
    return answer


def accept_request(ctx: Ctx, identifier: str) -> tuple[dict, list[int]]:
    """`token request`: the portal's form. The same answer whatever happened; the reason is
    audited. Returns the answer and the messages still to deliver (the caller delivers them
    after answering, so the answer's time does not tell whether one was queued)."""
    # What sending needs, loaded in every case: the key (a missing key file then fails every
    # request alike) and the message catalogue, so no case does less work than another.
    ctx.key()
    from ..messages import pick_lang  # noqa: F401

    try:
        identifier = ids.clean_text(identifier, "the identifier", max_len=320, allow_empty=False)
    except B24Error:
        identifier = None
    issued = []
    # Before the lock: the portal re-read and the checkwords' hashes of the accounts it names.
    ahead, ahead_channel = _resolve_identifier(ctx, ctx.store.conn, identifier) if identifier else ([], "email")
    prepared = prepare(ctx, [writeback.reconcile(ctx, u) for u in ahead], ahead_channel)
    with ctx.store.write() as conn:
        users, channel = _resolve_identifier(ctx, conn, identifier) if identifier else ([], "email")
        for user in users or [None]:
            try:
                if user is None:
                    raise B24Error("not_found", "no account matches")
                issued.append(create(ctx, conn, user, via=channel, ttl=None, action="token.request",
                                     prepared=prepared))
            except B24Error as exc:
                ctx.audit(conn, "token.request.refused", user["login"] if user else None, reason=exc.code,
                          channel=channel, identifier=(identifier or "")[:320])
    writeback.flush()  # the portal's CHECKWORD first, so the link works when the message arrives
    messages = [one.message_id for one in issued if one.message_id is not None]
    return answer(), messages


def revoke(ctx: Ctx, login: str, reason: str | None = None) -> dict:
    reason = ids.clean_text(reason or "", "the reason", max_len=500) or "revoked by operator"
    with ctx.store.write() as conn:
        user = get_user(conn, login)
        active = token_store.active(conn, user["id"])
        if active is not None and writeback.enabled(ctx, user):
            writeback.clear_checkword_of(ctx, conn, user, active["id"])
        count = token_store.revoke_active(conn, user["id"], ctx.now(), reason)
        failures = guessing.reset(ctx, conn, user)
        ctx.audit(conn, "token.revoke", user["login"], revoked=count, reason=reason, failures_reset=failures)
    return {"login": user["login"], "revoked": count, "failures_reset": failures}


STATES = ("active", "superseded", "used", "revoked", "expired", "all")


def list_tokens(ctx: Ctx, login: str | None, state: str = "all", limit: int = 200) -> list[dict]:
    if state not in STATES:
        raise B24Error("usage", f"--state must be one of {', '.join(STATES)}")
    conn = ctx.store.conn
    user_id = get_user(conn, login)["id"] if login else None
    states = None if state == "all" else (state,)
    now = ctx.now()
    return [control_string_view(r, r["login"], now) for r in token_store.for_user(conn, user_id, states, now, limit)]


# ---- using a control string ------------------------------------------------------------------

def find(ctx: Ctx, conn, user, secret: str):
    """The control string row a secret matches for this account (newest), or None."""
    kind = secret_codec.shape_of(secret)
    if kind is None or user is None:
        # Same work as a real look-up, so an unknown login is not told apart by time.
        token_store.matching(conn, -1, secret_codec.digest("code", "000000", -1, ctx.key()))
        return None
    return token_store.matching(conn, user["id"], secret_codec.digest(kind, secret, user["id"], ctx.key()))


def check(ctx: Ctx, login: str, secret: str) -> dict:
    """`token check`: the state of a control string without using it. A wrong one counts like a
    wrong one given to `redeem` (a try of the active code, the failure budget), and a login that
    matches no account answers as a real one with a wrong string. Every check is audited."""
    conn = ctx.store.conn
    user = writeback.reconcile(ctx, account_for(conn, login))
    row = None if guessing.is_paused(ctx, conn, user, login) else find(ctx, conn, user, secret)
    if row is None:
        raise guessing.refuse(ctx, user, login, None, secret, "token.check.failed")
    now = ctx.now()
    view = control_string_view(row, user["login"], now)
    if view["state"] != "active":
        err = guessing.refuse(ctx, user, login, row, secret, "token.check.failed")
        if err.code != "recovery_paused":
            err.details["control_string"] = view
        raise err
    with ctx.store.write() as conn:
        ctx.audit(conn, "token.check", user["login"], control_string=row["id"], state="active")
    return view


def account_for(conn, login: str):
    """The account a typed login names, or None (also for text that cannot be a login)."""
    try:
        key = ids.login_key(ids.clean_text(login, "the login"))
    except B24Error:
        return None
    return user_store.by_login_key(conn, key)
