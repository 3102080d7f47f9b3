"""Messages: queued in the same transaction as what they announce, delivered after commit.

Delivery never runs inside the write lock. A sender first claims the message (`sending`, leased
to one claim token), so concurrent senders never send it twice; only the claimant records the
result. A failed delivery leaves the message `failed` with the server's answer for `outbox send`
to retry; a message whose control string is no longer active by the time it goes out is
cancelled instead (it would only carry a dead link). Every attempt carries the same Message-ID.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

from ..store import outbox as outbox_store
from ..store import tokens as token_store
from . import secrets as secret_codec
from .context import Ctx
from .views import token_state


def recovery_link(ctx: Ctx, *, login: str, lang: str, control_string: str) -> str:
    """Bitrix's own link (SPEC §3), every value URL-encoded."""
    settings = ctx.settings
    return settings.tokens.link_template.format(
        portal_url=settings.portal_url.rstrip("/"),
        lang=quote(lang, safe=""),
        control_string=quote(control_string, safe=""),
        login=quote(login, safe=""),
    )


def base_params(ctx: Ctx, user) -> dict:
    return {
        "login": user["login"],
        "name": " ".join(p for p in (user["name"], user["last_name"]) if p),
        "portal_url": ctx.settings.portal_url,
        "portal_host": urlsplit(ctx.settings.portal_url).hostname or ctx.settings.portal_url,
        "sender": ctx.settings.sender,
    }


def lang_for(ctx: Ctx, user) -> str:
    from ..messages import pick_lang

    return pick_lang(user["lang"], ctx.settings.default_lang)


def enqueue(ctx: Ctx, conn, *, user, channel: str, template: str, recipient: str, params: dict,
            token_id: int | None = None, secret: str | None = None) -> int:
    """Queue a message inside the caller's transaction; a secret goes in sealed, never in clear."""
    sealed = secret_codec.seal(secret, ctx.key()) if secret else None
    return outbox_store.insert(
        conn, user_id=user["id"], token_id=token_id, channel=channel, template=template,
        lang=lang_for(ctx, user), recipient=recipient, params={**base_params(ctx, user), **params},
        sealed=sealed, now=ctx.now(),
    )


def preload(channel: str, lang: str, params: dict) -> None:
    """Import and load, ahead of time, what rendering and sending a notice needs."""
    from ..messages import render

    try:
        render("password_changed", lang, params)
    except ValueError:
        pass  # only a warm-up: the real rendering reports any problem
    if channel == "email":
        from ..delivery import mail  # noqa: F401
    else:
        from ..delivery import sms  # noqa: F401


LEASE_FLOOR = 120  # seconds a claim lasts at least
LEASE_WAITS = 12  # ...and at least this many full transport timeouts (connect, EHLO, TLS, AUTH, MAIL, ...)


def lease_seconds(ctx: Ctx, channel: str) -> int:
    """How long a claim lasts: longer than any send that can still succeed, so a slow sender is
    not overtaken by a second one; a crashed sender's message waits this long before a retry."""
    timeout = ctx.settings.mail.smtp_timeout if channel == "email" else ctx.settings.sms.http_timeout
    return max(LEASE_FLOOR, LEASE_WAITS * int(timeout))


def _claimant() -> str:
    from ..store.leases import claimant

    return claimant()


def _dead_secret(ctx: Ctx, conn, msg) -> str | None:
    """Why a message carrying a secret must not go out (its control string ended), or None."""
    if not msg["sealed"]:
        return None
    token = token_store.by_id(conn, msg["control_string_id"]) if msg["control_string_id"] else None
    state = token_state(token, ctx.now()) if token else "gone"
    return None if state == "active" else f"control string {state} before delivery"


def _render(ctx: Ctx, conn, msg) -> tuple[object, str | None]:
    """Build the text of a message; returns (Rendered, reason to cancel or None)."""
    from ..messages import render

    params = json.loads(msg["params"])
    dead = _dead_secret(ctx, conn, msg)
    if dead:
        return None, dead
    if msg["sealed"]:
        token = token_store.by_id(conn, msg["control_string_id"])
        secret = secret_codec.unseal(msg["sealed"], ctx.key())
        if token["kind"] == "link":
            params["link"] = recovery_link(ctx, login=params["login"], lang=msg["lang"], control_string=secret)
        else:
            params["code"] = secret
    return render(msg["template"], msg["lang"], params), None


def _transmit(ctx: Ctx, msg, rendered, accepted) -> None:
    if msg["channel"] == "email":
        from ..delivery.mail import build_email, send_email

        email = build_email(sender=ctx.settings.sender, recipient=msg["recipient"], subject=rendered.subject,
                            body=rendered.body, lang=msg["lang"], message_id=msg["message_id"])
        send_email(ctx.settings, email, accepted)
    else:
        from ..delivery.sms import send_sms

        send_sms(ctx.settings, msg["recipient"], rendered.body, message_id=msg["message_id"])


def deliver(ctx: Ctx, message_id: int) -> dict:
    """Send one queued or failed message. Returns {"status", "recipient", "error"}.

    The message is claimed first (exclusive, leased); a message another sender holds is left to
    it and its current status returned. Only this claim's owner records the result.
    """
    from ..delivery import DeliveryError

    store = ctx.store
    owner = _claimant()
    with store.write() as conn:
        msg = outbox_store.by_id(conn, message_id)
        if msg is None:
            return {"status": "gone", "recipient": None, "error": None, "claimed": False}
        host = urlsplit(ctx.settings.portal_url).hostname or "localhost"
        if not outbox_store.claim(conn, message_id, owner=owner, now=ctx.now(),
                                  lease=lease_seconds(ctx, msg["channel"]), host=host):
            # Another sender holds it or already finished it: its state as of now, not our doing.
            return {"status": msg["status"], "recipient": msg["recipient"], "error": msg["error"], "claimed": False}
    msg = outbox_store.by_id(store.conn, message_id)
    login = json.loads(msg["params"]).get("login")
    try:
        rendered, cancel_reason = _render(ctx, store.conn, msg)
    except Exception as exc:  # nothing went out: give the message back as failed, then report
        with store.write() as conn:
            outbox_store.mark_failed(conn, message_id, owner, f"cannot build the message: {type(exc).__name__}")
        raise
    if cancel_reason:
        with store.write() as conn:
            outbox_store.cancel(conn, message_id, owner, cancel_reason)
        return {"status": "cancelled", "recipient": msg["recipient"], "error": cancel_reason}
    marked: list[bool] = []

    def record_sent() -> None:
        with store.write() as conn:
            marked.append(True)
            if not outbox_store.mark_sent(conn, message_id, owner, ctx.now()):
                # The lease ran out mid-send and another sender took the message: it may arrive
                # twice, with the same Message-ID. Recorded so an operator can tell.
                ctx.audit(conn, "outbox.lease_lost", login, message=message_id, channel=msg["channel"],
                          recipient=msg["recipient"], message_id=msg["message_id"])

    try:
        _transmit(ctx, msg, rendered, record_sent)
    except DeliveryError as exc:
        if marked:  # accepted and recorded; only the goodbye failed
            return {"status": "sent", "recipient": msg["recipient"], "error": None}
        error = str(exc) or type(exc).__name__
        with store.write() as conn:
            # Revoked or superseded while it was being sent: never retry a dead secret.
            dead = _dead_secret(ctx, conn, msg)
            if dead:
                outbox_store.cancel(conn, message_id, owner, f"{dead} (last attempt: {error})"[:500])
            else:
                outbox_store.mark_failed(conn, message_id, owner, error)
            ctx.audit(conn, "outbox.failed", login, message=message_id, channel=msg["channel"],
                      recipient=msg["recipient"], error=error)
        return {"status": "cancelled" if dead else "failed", "recipient": msg["recipient"], "error": error}
    if not marked:  # transports with nothing after acceptance (files, SMS) are recorded here
        record_sent()
    return {"status": "sent", "recipient": msg["recipient"], "error": None}


def deliver_detached(ctx: Ctx, message_ids: list[int]) -> None:
    """Deliver in a process of its own that outlives this one (see run_detached)."""
    run_detached(ctx, lambda child: [deliver(child, message_id) for message_id in message_ids])


def run_detached(ctx: Ctx, work) -> None:
    """Run `work(ctx)` in a process of its own that outlives this one (`token request`): the caller's
    answer and exit then take the same time whether or not a message went out. The caller's
    connection is closed first: SQLite keeps per-file lock bookkeeping in the process, and a
    child inheriting it would believe it holds the caller's locks, so another process could
    checkpoint and delete the WAL under it. The detached process opens its own connection and
    talks to no one; a message it fails to deliver stays failed for `outbox send`, and one it
    never reaches (killed, machine down) stays queued for it. It is started even with nothing
    to deliver, so the caller's own remaining work (after a fork every page it writes is
    copied) is the same in every case."""
    import os

    ctx.store.close()  # the caller needs the store no more; see above
    caller_alive, caller_end = os.pipe()  # the caller never closes caller_end: it closes at its exit
    first = os.fork()
    if first:
        os.waitpid(first, 0)  # the middle process exits at once: nothing is left to reap later
        return
    try:
        if os.fork():  # the middle process: its child is adopted by init
            os._exit(0)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the caller's pipes see EOF when this process's parent exits
            os.dup2(null, fd)
        os.close(caller_end)
        os.read(caller_alive, 1)  # deliver once the caller has exited: never compete with its answer
        from dataclasses import replace

        from ..store.db import open_store

        store = open_store(ctx.settings.db_path)
        work(replace(ctx, store=store, detach=False))
        store.close()
    finally:
        os._exit(0)


def send_pending(ctx: Ctx, progress=None) -> dict:
    """`outbox send`: retry every queued and failed message (and any whose sender's lease ended)."""
    counts = {"sent": 0, "failed": 0, "cancelled": 0, "skipped": 0}
    ids = outbox_store.pending_ids(ctx.store.conn, ctx.now())
    for message_id in ids:
        result = deliver(ctx, message_id)
        done_here = result.get("claimed", True) and result["status"] in counts
        counts[result["status"] if done_here else "skipped"] += 1
        if progress:
            progress()
    counts["total"] = len(ids)
    return counts


def list_messages(ctx: Ctx, status: str | None, limit: int = 100) -> list[dict]:
    from .views import message_view

    now = ctx.now()
    return [{**message_view(m), "lease_ended": m["status"] == "sending" and m["lease_until"] <= now}
            for m in outbox_store.listing(ctx.store.conn, status, limit)]
