"""Setting passwords: one path for every command that sets one (user add, redeem, reset,
passwd, bulk reset). Policy and bcrypt run before the write lock is taken; the write itself is
`store_password`, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass

from ..store import tokens as token_store
from ..store import users as user_store
from . import notices, writeback
from .context import Ctx
from .passwords import hash_password
from .policy import effective, enforce, history_digest
from .portal_views import require_in_portal


@dataclass
class NewPassword:
    hash: str
    digest: str  # for the reuse history
    portal: dict | None = None  # the portal write-back's Bitrix hashes (write = true), never the password


def account_fields(user) -> dict:
    """What the similarity rule compares a password with."""
    if user is None:
        return {}
    return {"login": user["login"], "name": user["name"] or "", "last_name": user["last_name"] or "",
            "email": user["email"]}


def prepare_password(ctx: Ctx, password: str, user=None, *, notify: bool = False, **fields) -> NewPassword:
    """Check a new password against the policy (with the account's history) and hash it. Slow.
    With `notify`, the password-changed notice's machinery loads meanwhile on the other core."""
    history = user_store.history(ctx.store.conn, user["id"], 64) if user is not None and ctx.store else []
    enforce(ctx.settings.policy, password, history=history, key=ctx.key(), **{**account_fields(user), **fields})
    warming = notices.warm_up(ctx, user) if notify else None
    try:
        portal = writeback.password_payload(ctx, password) if writeback.enabled(ctx, user) else None
        return NewPassword(hash=hash_password(password, ctx.settings.bcrypt_rounds),
                           digest=history_digest(ctx.key(), password), portal=portal)
    finally:
        if warming is not None:
            warming.join()


def history_size(ctx: Ctx) -> int:
    """How many previous passwords are remembered (the preset may set it)."""
    return max(effective(ctx.settings.policy).PASSWORD_UNIQUE_COUNT, 1)


def store_password(ctx: Ctx, conn, user_id: int, new: NewPassword, *, must_change: bool = False,
                   reason: str = "password_changed") -> int:
    """Write a new password; every active control string stops working (Bitrix behaviour). With
    write-back on, the portal's PASSWORD (and the rest of SPEC §6's row) is queued here too."""
    user = user_store.by_id(conn, user_id)
    require_in_portal(user)
    now = ctx.now()
    if writeback.enabled(ctx, user):
        if new.portal is None:
            raise ValueError("a portal account's new password must be prepared with its portal hash")
        writeback.queue(ctx, conn, user, "password", {**new.portal, "expired": bool(must_change),
                                                      "first": writeback.first_password(conn, user)})
    user_store.update(conn, user_id, {"password_hash": new.hash, "password_changed_at": now, "updated_at": now,
                                      "must_change_password": int(must_change), "failed_attempts": 0})
    user_store.add_history(conn, user_id, new.digest, now, keep=history_size(ctx))
    return token_store.revoke_active(conn, user_id, now, reason)
