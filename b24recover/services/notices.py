"""The "your password was changed" notice, shared by every command that changes a password
(redeem, reset, passwd, bulk reset): queued inside the caller's transaction, delivered after
the commit so no network call runs under the write lock."""

from __future__ import annotations

import threading

from . import outbox
from .context import Ctx


def notice_target(user) -> tuple[str, str] | None:
    """(channel, recipient): the account's email, else its phone, else nothing to send to."""
    if user["email"]:
        return "email", user["email"]
    if user["phone"]:
        return "sms", user["phone"]
    return None


def queue_password_changed(ctx: Ctx, conn, user) -> int | None:
    """Queue the notice inside the caller's transaction; returns the message id, or None when
    the account has no address (a social-only account, for instance)."""
    target = notice_target(user)
    if target is None:
        return None
    channel, recipient = target
    return outbox.enqueue(ctx, conn, user=user, channel=channel, template="password_changed",
                          recipient=recipient, params={"changed_at": ctx.now()})


def deliver(ctx: Ctx, message_id: int | None) -> dict | None:
    """Deliver a queued notice after the commit: {"status", "recipient"} (+ "error" when it failed).
    A failure leaves the message in the outbox for `outbox send`; the password change stands."""
    if message_id is None:
        return None
    result = outbox.deliver(ctx, message_id)
    shown = {"status": result["status"], "recipient": result["recipient"]}
    if result.get("error"):
        shown["error"] = result["error"]
    return shown


def warm_up(ctx: Ctx, user) -> threading.Thread | None:
    """Load what delivering the notice needs (babel's locale data, the email package) in a
    thread while bcrypt, which releases the GIL, hashes on the other core: a redeem then costs
    little more than bcrypt itself. Join it before the write transaction."""
    target = notice_target(user) if user is not None else None
    if target is None:
        return None
    lang, params = outbox.lang_for(ctx, user), {**outbox.base_params(ctx, user), "changed_at": ctx.now()}
    thread = threading.Thread(target=outbox.preload, args=(target[0], lang, params), daemon=True)
    thread.start()
    return thread
