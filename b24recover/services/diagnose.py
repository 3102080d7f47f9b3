"""`diagnose`: why this person cannot get in, and what to do, in order.

Every finding is read from the store's real state (account row, control strings, outbox,
audit trail), never a checklist printed to everyone.
"""

from __future__ import annotations

import json

from ..clock import iso
from ..store import audit as audit_store
from ..store import outbox as outbox_store
from ..store import tokens as token_store
from ..store import users as user_store
from . import guessing
from .accounts import get_user
from .context import Ctx
from .passwords import is_legacy, scheme_of
from .portal_views import gone_finding, portal_view
from .tokens import throttled_until
from .views import token_state


def _finding(code: str, message: str, action: str) -> dict:
    return {"code": code, "message": message, "action": action}


def _resend(user, kind: str | None = None) -> str:
    """The command that sends this account a new control string on a channel it really has
    (an address on file, not one still pending), preferring the kind it had before; without
    any, a QR code for a person at the desk."""
    channels = [c for c, field in (("email", "email"), ("sms", "phone")) if user[field]]
    if kind == "code" and "sms" in channels:
        channels = ["sms"]
    return f"b24recover token issue {user['login']} --via {channels[0] if channels else 'qr'}"


def writeback_findings(conn, user) -> list[dict]:
    """The portal write-backs still open for the account, and a checkword the portal replaced."""
    from ..store import portal_writes

    out = []
    if user["portal_id"] is None:
        return out
    writes = portal_writes.open_for_user(conn, user["id"])
    failed = [w for w in writes if w["status"] == "failed"]
    if failed:
        out.append(_finding("portal_write_failed", f"{len(failed)} change(s) to {user['login']} are not in the portal yet: "
                            f"the last attempt failed ({failed[-1]['error']}). The portal still has the old values.",
                            "Once the portal database is reachable: b24recover portal push (run it from cron)"))
    elif writes:
        out.append(_finding("portal_write_pending", f"{len(writes)} change(s) to {user['login']} are queued for the "
                            "portal and not applied yet.", "They are applied in a moment; or now: b24recover portal push"))
    mine = portal_writes.checkword_of(conn, user["id"])
    if mine is not None and mine["superseded_at"] is not None:
        out.append(_finding("portal_superseded", "The portal sent a newer message itself (its own 'Forgot password' "
                            "or an administrator), so b24recover's link no longer works.",
                            "Use the link in the most recent email; or send a new one: "
                            f"b24recover token issue {user['login']} --via email"))
    return out


def diagnose(ctx: Ctx, login: str) -> dict:
    conn = ctx.store.conn
    user = get_user(conn, login)
    name, sender = user["login"], ctx.settings.sender
    findings: list[dict] = []
    add = findings.append
    portal = portal_view(conn, user)
    if (gone := gone_finding(name, portal)) is not None:
        add(gone)

    if user["external"]:
        # Managed elsewhere: nothing b24recover could send or set would help.
        from .bitrix import manager

        add(_finding("external_account", f"{name} is managed by {manager(user['external'])}: its password is "
                     "kept there, and b24recover sends it no control strings.",
                     "Recover the account where it is managed (for LDAP#…: reset the password in the directory); "
                     "the portal then accepts the new one."))
        return {"login": name, "findings": findings}

    if user["blocked"]:
        add(_finding("blocked", f"The account {name} is blocked: it cannot sign in and gets no control strings.",
                     f"If the block is no longer wanted: b24recover user unblock {name}"))

    paused = guessing.paused_until(ctx, conn, f"u:{user['id']}")
    if paused is not None:
        add(_finding("recovery_paused",
                     f"Recovery is paused until {iso(paused)}: {ctx.settings.tokens.account_failures} wrong control "
                     "strings or codes were tried within 24 h; until then no control string is sent or accepted.",
                     f"Wait until {iso(paused)}; or, once you are sure it is really them (the tries may be someone "
                     f"guessing): b24recover token revoke {name} (resets the count, audited)"))

    socials = user_store.socials(conn, user["id"])
    if user["password_hash"] is None:
        providers = ", ".join(sorted({s["provider"] for s in socials})) or "a social network"
        if not user["email"] and not user["phone"]:
            add(_finding("social_only", f"{name} signs in only through {providers}: no password and no email or "
                         "phone to recover with.",
                         f"Link an address; its control string sets the first password: b24recover link {name} --email ADDRESS"))
        else:
            add(_finding("social_only", f"{name} signs in only through {providers} and has no password yet.",
                         f"Send a control string to set the first password: {_resend(user)}"))

    refused = audit_store.last_event(conn, user["login_key"], ("token.request.refused", "token.request", "token.issue"))
    refused_reason = json.loads(refused["details"]).get("reason") if refused and refused["action"] == "token.request.refused" else None
    if not user["email"] and (refused_reason == "no_email" or not user["phone"]):
        add(_finding("no_email", f"{name} has no email on file, so no recovery link can be sent.",
                     f"Link one: b24recover link {name} --email ADDRESS"))
    if not user["phone"] and (refused_reason == "no_phone" or not user["email"]):
        add(_finding("no_phone", f"{name} has no phone on file, so no SMS code can be sent.",
                     f"Link one: b24recover link {name} --phone NUMBER"))

    pending = user_store.pending(conn, user["id"])
    if pending is not None:
        add(_finding("pending_link", f"{pending['address']} was linked on {iso(pending['created_at'])} and awaits "
                     "confirmation; it is not a login yet.",
                     "Ask them to follow the link (or enter the code) sent to that address; "
                     f"to resend: b24recover link {name} --{'email' if pending['channel'] == 'email' else 'phone'} "
                     f"{pending['address']}"))

    findings.extend(_control_string_findings(ctx, conn, user))
    findings.extend(writeback_findings(conn, user))

    # Once the newest control string was used, recovery is complete: the throttle and the
    # delivery of its messages no longer stand in anyone's way.
    latest = token_store.latest(conn, user["id"])
    recovered = latest is not None and latest["state"] == "used"
    until = None if recovered else throttled_until(ctx, conn, user["id"])
    if until is not None:
        add(_finding("throttled", f"New requests are throttled until {iso(until[0])}: {until[1]}.",
                     f"Wait until {iso(until[0])}, or an operator can pass the limit: {_resend(user)} --force"))

    msg = outbox_store.last_for_user(conn, user["id"])
    if msg is not None and not recovered:
        findings.extend(_delivery_findings(msg, sender))

    if user["must_change_password"]:
        add(_finding("must_change_password", f"{name} must change the password at the next sign-in.",
                     "Tell them to sign in with the temporary password and choose a new one."))
    if is_legacy(user["password_hash"]):
        add(_finding("legacy_hash", f"The password hash was imported from Bitrix ({scheme_of(user['password_hash'])}) "
                     "and is not upgraded yet.",
                     f"It becomes bcrypt at the next successful 'b24recover passwd {name}'; or reset it."))
    if paused is not None:  # nothing can be sent before the pause ends: say so where a command would
        for f in findings:
            if f["code"] != "recovery_paused" and ("b24recover token issue" in f["action"] or "b24recover link" in f["action"]):
                f["action"] = f"Once the pause has ended (or after token revoke): {f['action']}"
    if not findings:
        add(_finding("ok", f"Nothing stands in the way of {name}.",
                     "They can sign in, or use 'Forgot your password?' with their email, phone or login."))
    return {"login": name, "findings": findings, "portal": portal}


def _control_string_findings(ctx: Ctx, conn, user) -> list[dict]:
    """What happened to the last control string, and to the last attempt to use one."""
    name, now = user["login"], ctx.now()
    out = []
    latest = token_store.latest(conn, user["id"])
    attempt = audit_store.last_event(conn, user["login_key"], ("redeem", "redeem.failed"))
    failed_code = None
    if attempt is not None and attempt["action"] == "redeem.failed" and (latest is None or attempt["at"] >= latest["created_at"]):
        failed_code = json.loads(attempt["details"]).get("code")
    if failed_code == "control_string_superseded":
        out.append(_finding("control_string_superseded",
                            f"On {iso(attempt['at'])} {name} used an outdated link: a newer request had been sent since.",
                            "Tell them to use the link in the most recent message only (older ones never work); "
                            f"resend if needed: {_resend(user, latest['kind'] if latest else None)}"))
    if latest is None:
        return out
    state = token_state(latest, now)
    if state == "expired":
        out.append(_finding("control_string_expired",
                            f"The last {'code' if latest['kind'] == 'code' else 'link'} expired at {iso(latest['expires_at'])}.",
                            f"Send a new one: {_resend(user, latest['kind'])}"))
    elif state == "revoked" and latest["end_reason"] == "too_many_attempts":
        out.append(_finding("too_many_attempts",
                            f"The last code was entered wrongly {latest['attempts']} times and no longer works.",
                            f"Send a new code and make sure they type the newest one: {_resend(user, 'code')}"))
    elif failed_code == "control_string_used":
        out.append(_finding("control_string_used", "They tried a link that was already used.",
                            f"If they still cannot sign in, send a new one: {_resend(user, latest['kind'])}"))
    return out


def _delivery_findings(msg, sender: str) -> list[dict]:
    to = msg["recipient"]
    if msg["status"] == "failed":
        return [_finding("delivery_failed", f"The last message to {to} was not delivered: {msg['error']}",
                         "Fix the mail/SMS settings or the address, then: b24recover outbox send")]
    if msg["status"] == "sending":
        return [_finding("delivery_queued", f"The last message to {to} is being sent (claimed until "
                         f"{iso(msg['lease_until'])}).",
                         "Wait a moment; if that time passes, run: b24recover outbox send")]
    if msg["status"] == "queued":
        return [_finding("delivery_queued", f"The last message to {to} is still queued (since {iso(msg['created_at'])}).",
                         "Run: b24recover outbox send (and check it runs from cron)")]
    if msg["status"] == "sent":
        where = (f"check the spam folder, add {sender} to the safe senders (a custom mail domain must whitelist it), "
                 f"and confirm that {to} is really their address") if msg["channel"] == "email" else \
                f"check that {to} is really their number and can receive SMS"
        return [_finding("delivery_sent", f"The last message ({msg['template']}) was sent to {to} at {iso(msg['sent_at'])}.",
                         f"If it did not arrive: {where}.")]
    return []
