"""Redeeming a control string or SMS code to set a new password (and confirm a linked address).

Checks that need no lock run first; the policy check and bcrypt run before the write lock; the
control string is then used by one conditional UPDATE inside BEGIN IMMEDIATE, so of two
concurrent redemptions exactly one wins. A password refused by the policy does not use it up.
"""

from __future__ import annotations

from ..errors import B24Error
from ..store import tokens as token_store
from ..store import users as user_store
from . import guessing, notices, outbox, writeback
from .accounts import check_free
from .context import Ctx
from .credentials import prepare_password, store_password
from .linking import notify_other_address
from .tokens import account_for, find
from .views import token_state


def redeem(ctx: Ctx, login: str, secret: str, password: str) -> dict:
    conn = ctx.store.conn
    user = writeback.reconcile(ctx, account_for(conn, login))
    # While paused nothing is looked up: even the right control string is refused.
    row = None if guessing.is_paused(ctx, conn, user, login) else find(ctx, conn, user, secret)
    if row is None or token_state(row, ctx.now()) != "active":
        raise guessing.refuse(ctx, user, login, row, secret, "redeem.failed")

    try:
        new = prepare_password(ctx, password, user, notify=True)
    except B24Error as exc:  # password_policy: audited, and the control string stays valid
        with ctx.store.write() as conn:
            ctx.audit(conn, "redeem.failed", user["login"], code=exc.code, control_string=row["id"])
        raise

    _refuse_portal_obstacles(ctx, user, row)
    message_ids = []
    with ctx.store.write() as conn:
        now = ctx.now()
        until = guessing.paused_until(ctx, conn, guessing.subject(ctx, user, login))
        if until is not None:  # wrong tries made while bcrypt ran paused it
            err = guessing.paused_error(ctx, until)
            ctx.audit(conn, "redeem.failed", user["login"], code=err.code, control_string=row["id"])
            failure = err
        elif not token_store.consume(conn, row["id"], now):
            current = token_store.by_id(conn, row["id"])
            err = guessing.incorrect() if current is None else guessing.refusal(current, now)
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


def _refuse_portal_obstacles(ctx: Ctx, user, row) -> None:
    """What the portal could not take (the number another portal user holds, the login of an
    internal namesake) refuses the redemption before the control string is used."""
    pending = user_store.pending(ctx.store.conn, user["id"]) if row["purpose"] == "link" else None
    sms = pending is not None and pending["channel"] == "sms" and pending["address"] == row["address"]
    writeback.refuse_link_obstacles(ctx, user, phone=pending["address"] if sms else None)


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
        # The code sent to it proved the number, as Bitrix's VerifyPhoneCode confirms one.
        writeback.queue(ctx, conn, user, "phone", {"phone": pending["address"], "confirmed": True})
    user_store.clear_pending(conn, user["id"])
    ctx.audit(conn, "link.confirm", user["login"], channel=pending["channel"], address=pending["address"])
    return pending["address"]


def _queue_notices(ctx: Ctx, conn, user, confirmed: str | None) -> list[int]:
    """"Your password was changed" to the account's address; a linked-address notice to the other one."""
    queued = [notices.queue_password_changed(ctx, conn, user)]
    if confirmed:
        queued.append(notify_other_address(ctx, conn, user, confirmed))
    return [message for message in queued if message is not None]
