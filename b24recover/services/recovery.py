"""Redeeming a control string or SMS code to set a new password (and confirm a linked address).

Checks that need no lock run first; the policy check and bcrypt run before the write lock; the
control string is then used by one conditional UPDATE inside BEGIN IMMEDIATE, so of two
concurrent redemptions exactly one wins. A password refused by the policy does not use it up.
"""

from __future__ import annotations

from ..errors import B24Error
from ..store import tokens as token_store
from ..store import users as user_store
from . import identifiers as ids
from . import notices, outbox, writeback
from . import secrets as secret_codec
from .accounts import check_free
from .context import Ctx
from .credentials import prepare_password, store_password
from .linking import notify_other_address
from .tokens import find, incorrect, refusal
from .views import token_state


def _current_refusal(conn, row, now: int) -> B24Error:
    """Why a control string read a moment ago does not work now (purged meanwhile: incorrect)."""
    current = token_store.by_id(conn, row["id"])
    return incorrect() if current is None else refusal(current, now)


def _refuse(ctx: Ctx, user, typed_login: str, row, secret: str) -> B24Error:
    """Record a failed attempt (counting wrong codes) and return the error to raise."""
    with ctx.store.write() as conn:
        err = incorrect() if row is None else _current_refusal(conn, row, ctx.now())
        if user is not None and row is None:
            active = token_store.active(conn, user["id"])
            if active is not None and active["kind"] == "code" and secret_codec.shape_of(secret) == "code":
                if token_store.count_wrong_try(conn, active["id"], ctx.settings.tokens.code_attempts, ctx.now()):
                    err = B24Error("too_many_attempts",
                                   "the code was entered wrongly too many times and no longer works")
            user_store.count_failed_attempt(conn, user["id"])
        ctx.audit(conn, "redeem.failed", user["login"] if user else None, code=err.code,
                  control_string=row["id"] if row else None,
                  typed_login=None if user else typed_login[:255])
    return err


def redeem(ctx: Ctx, login: str, secret: str, password: str) -> dict:
    conn = ctx.store.conn
    try:
        key = ids.login_key(ids.clean_text(login, "the login"))
    except B24Error:
        key = None
    user = user_store.by_login_key(conn, key) if key else None
    user = writeback.reconcile(ctx, user)
    row = find(ctx, conn, user, secret)
    if row is None or token_state(row, ctx.now()) != "active":
        raise _refuse(ctx, user, login, row, secret)

    try:
        new = prepare_password(ctx, password, user, notify=True)
    except B24Error as exc:  # password_policy: audited, and the control string stays valid
        with ctx.store.write() as conn:
            ctx.audit(conn, "redeem.failed", user["login"], code=exc.code, control_string=row["id"])
        raise

    message_ids = []
    with ctx.store.write() as conn:
        now = ctx.now()
        if not token_store.consume(conn, row["id"], now):
            err = _current_refusal(conn, row, now)
            ctx.audit(conn, "redeem.failed", user["login"], code=err.code, control_string=row["id"])
            failure = err
        else:
            failure = None
            user = user_store.by_id(conn, user["id"])
            confirmed = _confirm_pending(ctx, conn, user, row) if row["purpose"] == "link" else None
            store_password(ctx, conn, user["id"], new, reason="password_changed")
            user = user_store.by_id(conn, user["id"])
            message_ids = _queue_notices(ctx, conn, user, confirmed)
            ctx.audit(conn, "redeem", user["login"], control_string=row["id"], kind=row["kind"],
                      purpose=row["purpose"], confirmed=confirmed)
    if failure is not None:
        raise failure
    deliveries = [outbox.deliver(ctx, message_id) for message_id in message_ids]
    return {
        "login": user["login"],
        "password_changed": True,
        "confirmed": confirmed,
        "notices": [{"status": d["status"], "recipient": d["recipient"]} for d in deliveries],
    }


def _confirm_pending(ctx: Ctx, conn, user, row) -> str | None:
    """A control string sent to a pending address proves it: the address becomes a login."""
    pending = user_store.pending(conn, user["id"])
    if pending is None or pending["address"] != row["address"]:
        return None
    if pending["channel"] == "email":
        check_free(conn, email_key=pending["address_key"], owner_id=user["id"])
        user_store.update(conn, user["id"], {"email": pending["address"], "email_key": pending["address_key"]})
        writeback.queue(ctx, conn, user, "email", {"email": pending["address"]})  # before the password write
    else:
        check_free(conn, phone=pending["address"], owner_id=user["id"])
        user_store.update(conn, user["id"], {"phone": pending["address"]})
    user_store.clear_pending(conn, user["id"])
    ctx.audit(conn, "link.confirm", user["login"], channel=pending["channel"], address=pending["address"])
    return pending["address"]


def _queue_notices(ctx: Ctx, conn, user, confirmed: str | None) -> list[int]:
    """"Your password was changed" to the account's address; a linked-address notice to the other one."""
    queued = [notices.queue_password_changed(ctx, conn, user)]
    if confirmed:
        queued.append(notify_other_address(ctx, conn, user, confirmed))
    return [message for message in queued if message is not None]
