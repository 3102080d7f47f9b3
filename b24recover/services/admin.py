"""Administrator reset (Bitrix Settings > Users) and "change password knowing the current one".

Both follow the one path for setting a password: the policy check and bcrypt run before the
write lock (`prepare_password`), the write is `store_password` inside one BEGIN IMMEDIATE
transaction (which revokes active control strings), the "password changed" notice is queued in
that transaction and delivered after the commit.
"""

from __future__ import annotations

import secrets

from ..errors import B24Error
from ..store import users as user_store
from . import identifiers as ids
from . import notices
from .accounts import get_user
from .bitrix import refuse_external
from .context import Ctx
from .credentials import account_fields, prepare_password, store_password
from .passwords import BCRYPT_SHA256, is_legacy, scheme_of, verify_password

# A readable alphabet: no 0/O, 1/l/I look-alikes, and no quote, comma, backslash, space or
# shell-special `$` that would trouble a CSV file or a copy-paste. Every class is present, so
# every Bitrix preset (upper, lower, digits, punctuation) accepts the result.
UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LOWER = "abcdefghijkmnopqrstuvwxyz"
DIGITS = "23456789"
PUNCT = "!#%+-.=?@_"
ALPHABET = UPPER + LOWER + DIGITS + PUNCT
GENERATED_LENGTH = 20
_MAX_TRIES = 100


def _draw(length: int) -> str:
    rng = secrets.SystemRandom()
    chars = [secrets.choice(cls) for cls in (UPPER, LOWER, DIGITS, PUNCT)]
    chars += [secrets.choice(ALPHABET) for _ in range(length - len(chars))]
    rng.shuffle(chars)
    return "".join(chars)


def generate_password(ctx: Ctx, user=None, history: list[str] | None = None) -> str:
    """A random password that the policy in force accepts for this account (history included);
    drawn again in the rare case it is not (e.g. it happens to contain the login)."""
    from .policy import effective, violations

    policy = ctx.settings.policy
    length = max(GENERATED_LENGTH, effective(policy).PASSWORD_LENGTH)
    if history is None:
        history = user_store.history(ctx.store.conn, user["id"], 64) if user is not None and ctx.store else []
    for _ in range(_MAX_TRIES):
        candidate = _draw(length)
        if not violations(policy, candidate, history=history, key=ctx.key(), **account_fields(user)):
            return candidate
    raise B24Error("password_policy", "no random password met the policy in force",
                   hint="Check the [policy] settings: b24recover policy show.")


def _reason(text: str | None) -> str | None:
    return ids.clean_text(text or "", "the reason", max_len=500).strip() or None


def reset(ctx: Ctx, login: str, password: str | None = None, *, generate: bool = False,
          temporary: bool = False, notify: bool = True, reason: str | None = None) -> dict:
    """`reset`: an administrator sets a new password. Blocked accounts may be reset (the block
    stays). With `generate`, the result carries the generated password: show it once, store it
    nowhere."""
    if generate == (password is not None):
        raise B24Error("usage", "give either a new password or --generate, not both")
    reason = _reason(reason)
    user = get_user(ctx.store.conn, login)
    refuse_external(user)
    if generate:
        password = generate_password(ctx, user)
    new = prepare_password(ctx, password, user, notify=notify)  # slow: before the write lock
    with ctx.store.write() as conn:
        row = user_store.by_id(conn, user["id"])
        if row is None:
            raise B24Error("not_found", f"the account {user['login']!r} was deleted meanwhile")
        revoked = store_password(ctx, conn, row["id"], new, must_change=temporary, reason="password_reset")
        message = notices.queue_password_changed(ctx, conn, row) if notify else None
        ctx.audit(conn, "reset", row["login"], temporary=temporary, generated=generate, revoked=revoked,
                  notified=message is not None, blocked=bool(row["blocked"]), reason=reason)
    result = {"login": row["login"], "must_change_password": temporary, "generated": generate,
              "revoked": revoked, "notice": notices.deliver(ctx, message)}
    if generate:
        result["password"] = password
    return result


def _refuse_current(ctx: Ctx, user, scheme: str | None) -> B24Error:
    """Count a wrong current password against the account and audit it."""
    with ctx.store.write() as conn:
        user_store.count_failed_attempt(conn, user["id"])
        row = user_store.by_id(conn, user["id"])
        ctx.audit(conn, "passwd.failed", user["login"], code="password_incorrect",
                  failed_attempts=row["failed_attempts"] if row else None, scheme=scheme)
    if scheme is None:
        return B24Error("password_incorrect", f"the account {user['login']} has no password yet",
                        hint="Set a first one: b24recover reset LOGIN, or link an address and redeem "
                             "the control string sent to it.")
    return B24Error("password_incorrect", "the current password is not correct")


def verify_current(ctx: Ctx, login: str, current: str):
    """The account, when `current` is its password; a wrong one is counted and audited (exit 6)."""
    user = get_user(ctx.store.conn, login)
    refuse_external(user)
    if user["blocked"]:
        raise B24Error("blocked", f"the account {user['login']} is blocked")
    if not verify_password(current, user["password_hash"], ctx.settings.portal.charset):  # slow: before the write lock
        raise _refuse_current(ctx, user, scheme_of(user["password_hash"]))
    return user


def passwd(ctx: Ctx, login: str, current: str, new_password: str) -> dict:
    """`passwd`: change a password knowing the current one. The current one may be a bcrypt hash or
    an imported Bitrix hash ($6$ SHA-512-crypt, salt + md5, bare md5); the new one is always
    stored as bcrypt-sha256, so a legacy hash is upgraded here."""
    user = verify_current(ctx, login, current)
    stored = user["password_hash"]
    scheme = scheme_of(stored)
    new = prepare_password(ctx, new_password, user, notify=True)
    with ctx.store.write() as conn:
        row = user_store.by_id(conn, user["id"])
        if row is None:
            raise B24Error("not_found", f"the account {user['login']!r} was deleted meanwhile")
        if row["blocked"]:
            raise B24Error("blocked", f"the account {row['login']} was blocked meanwhile")
        if row["password_hash"] != stored:
            # Someone else changed it after we checked: the typed current password proves nothing now.
            raise B24Error("conflict", f"the password of {row['login']} was changed while this command ran",
                           hint="Run passwd again with the password now in force.")
        upgraded = scheme if is_legacy(stored) else None
        revoked = store_password(ctx, conn, row["id"], new, must_change=False, reason="password_changed")
        message = notices.queue_password_changed(ctx, conn, row)
        ctx.audit(conn, "passwd", row["login"], upgraded_from=upgraded, revoked=revoked,
                  cleared_must_change=bool(row["must_change_password"]))
    return {"login": row["login"], "password_changed": True, "scheme": BCRYPT_SHA256,
            "upgraded_from": upgraded, "must_change_password": False, "revoked": revoked,
            "notice": notices.deliver(ctx, message)}
