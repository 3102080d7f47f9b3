"""The failure budget and the answers to wrong control strings and codes (SPEC §2, §5).

Every wrong control string or code, through `redeem` and `token check` alike, is one row for
its *subject*: the account, or, for a login that matches no account, a keyed hash of the login
as typed. Both are counted and answered by the same rules, so the sequence of answers cannot
tell a real login from an invented one:

- the try that brings the subject to `[tokens] account_failures` wrong tries in 24 h, and every
  try after it, answers `recovery_paused` (nothing is looked up or counted while paused) until
  the oldest of those tries leaves the window or an operator runs `token revoke LOGIN`;
- otherwise a wrong 6-digit code answers `too_many_attempts` once `code_attempts` wrong codes
  were counted (in the window) while the account's newest code was what it is now, which is
  exactly when a real code dies; a login without codes counts all its wrong codes;
- anything else wrong is `control_string_incorrect`.
"""

from __future__ import annotations

import hashlib
import hmac

from ..clock import iso
from ..errors import B24Error
from ..store import failures as failure_store
from ..store import tokens as token_store
from ..store import users as user_store
from . import identifiers as ids
from . import secrets as secret_codec
from .context import Ctx
from .views import token_state

WINDOW = 86400  # SPEC §2: account_failures per 24 h


def subject(ctx: Ctx, user, typed_login: str) -> str:
    """'u:<id>' for an account; for a login that does not exist, an HMAC of it keyed by the key
    file, so the store never holds a list of the names people tried."""
    if user is not None:
        return f"u:{user['id']}"
    try:
        name = ids.login_key(ids.clean_text(typed_login, "the login"))
    except B24Error:
        name = "raw:" + typed_login
    digest = hmac.new(ctx.key(), b"login:" + name.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "k:" + digest.hexdigest()


def paused_until(ctx: Ctx, conn, subj: str) -> int | None:
    """When the subject's pause ends, if it is paused now."""
    now, budget = ctx.now(), ctx.settings.tokens.account_failures
    since = now - WINDOW
    count = failure_store.count_since(conn, subj, since)
    if count < budget:
        return None
    # The pause lasts until so many tries have left the window that fewer than `budget` remain.
    oldest = failure_store.nth_oldest_since(conn, subj, since, count - budget)
    return (oldest if oldest is not None else now) + WINDOW


def paused_error(ctx: Ctx, until: int, login: str | None = None) -> B24Error:
    """The answer while paused. To a person (redeem, token check) it names no account, so it
    reads the same for a login that does not exist; operators' commands name the account."""
    budget = ctx.settings.tokens.account_failures
    who = f" of {login}" if login else ""
    return B24Error(
        "recovery_paused",
        f"recovery{who} is paused until {iso(until)}: {budget} wrong control strings or codes within 24 h",
        hint=f"Wait until {iso(until)}, or an operator runs: b24recover token revoke {login or 'LOGIN'} "
             "(resets the count, audited).",
        paused_until=iso(until),
    )


def refuse_if_paused(ctx: Ctx, conn, user, typed_login: str) -> None:
    """Raise recovery_paused when the subject is paused: before anything is looked up."""
    until = paused_until(ctx, conn, subject(ctx, user, typed_login))
    if until is not None:
        raise paused_error(ctx, until)


def check_may_issue(ctx: Ctx, conn, user) -> None:
    """No new control string for a paused account (issue, request, link, bulk)."""
    until = paused_until(ctx, conn, f"u:{user['id']}")
    if until is not None:
        raise paused_error(ctx, until, user["login"])


def wrong_try(ctx: Ctx, conn, user, typed_login: str, secret: str) -> B24Error:
    """Count a wrong control string or code (inside the caller's write transaction) and return
    the answer. The same statements run for an unknown login as for an account."""
    now, t = ctx.now(), ctx.settings.tokens
    subj = subject(ctx, user, typed_login)
    until = paused_until(ctx, conn, subj)
    if until is not None:  # a concurrent try paused it meanwhile: nothing more is counted
        return paused_error(ctx, until)
    code_shaped = secret_codec.shape_of(secret) == "code"
    user_id = user["id"] if user is not None else -1
    code_id = failure_store.newest_code_id(conn, user_id)
    failure_store.record(conn, subj, now, code_shaped, code_id, WINDOW)
    active = token_store.active(conn, user_id)
    if code_shaped and active is not None and active["kind"] == "code":
        token_store.count_wrong_try(conn, active["id"], t.code_attempts, now)
    user_store.count_failed_attempt(conn, user_id)
    until = paused_until(ctx, conn, subj)
    if until is not None:
        return paused_error(ctx, until)
    if code_shaped and failure_store.wrong_codes_since(conn, subj, now - WINDOW, code_id) >= t.code_attempts:
        return B24Error("too_many_attempts", "the code was entered wrongly too many times and no longer works")
    return incorrect()


def reset(ctx: Ctx, conn, user) -> int:
    """`token revoke`: the operator vouches for the account; its count starts again."""
    return failure_store.reset(conn, f"u:{user['id']}")




def is_paused(ctx: Ctx, conn, user, typed_login: str) -> bool:
    return paused_until(ctx, conn, subject(ctx, user, typed_login)) is not None


def refuse(ctx: Ctx, user, typed_login: str, row, secret: str, action: str) -> B24Error:
    """Record a refused control string or code (a wrong one counts; one that matched but no
    longer works is told apart) with its audit event; return the error to raise."""
    with ctx.store.write() as conn:
        until = paused_until(ctx, conn, subject(ctx, user, typed_login))
        if until is not None:
            err = paused_error(ctx, until)
        elif row is None:
            err = wrong_try(ctx, conn, user, typed_login, secret)
        else:
            current = token_store.by_id(conn, row["id"])  # purged meanwhile: incorrect
            err = incorrect() if current is None else refusal(current, ctx.now())
        ctx.audit(conn, action, user["login"] if user else None, code=err.code,
                  control_string=row["id"] if row else None,
                  typed_login=None if user else typed_login[:255])
    return err


REFUSALS = {
    "superseded": ("control_string_superseded",
                   "Incorrect control word: a newer request was sent after this one, so this link or code no longer works"),
    "used": ("control_string_used", "this control string was already used"),
    "revoked": ("control_string_revoked", "this control string was revoked"),
    "expired": ("control_string_expired", "this control string has expired"),
}


def refusal(row, now: int) -> B24Error:
    """The error that tells a person exactly why a matching control string does not work."""
    state = token_state(row, now)
    if state == "revoked" and row["end_reason"] == "too_many_attempts":
        return B24Error("too_many_attempts", "this code was entered wrongly too many times and no longer works")
    code, message = REFUSALS[state]
    return B24Error(code, message)


def incorrect() -> B24Error:
    return B24Error("control_string_incorrect", "Incorrect control word: this control string or code is not valid for this login")
