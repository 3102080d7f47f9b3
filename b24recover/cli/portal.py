"""The bodies of `lookup`, `token request` and `redeem`: what a portal's forms and operators'
scripts call most. They are shared by the typer commands and by the fast path (cli/fast.py), so
both answer identically."""

from __future__ import annotations

import sys

from . import render


LOOKUP_LIMIT = 50


def lookup_body(sctx, query: str, by: str, as_json: bool, limit: int = LOOKUP_LIMIT, fmt: str | None = None,
                headers: bool = True) -> None:
    from ..services.lookup import lookup
    from . import listing

    listing.check(limit, fmt)
    matches = lookup(sctx, query, by, limit)
    columns = render.ACCOUNT_COLUMNS
    if any(m.get("portal_id") is not None for m in matches):  # a synced store: when each was read
        columns = [*columns, ("portal_synced_at", "Read from portal")]
    listing.emit("matches", columns, matches, limit=limit, fmt=fmt, as_json=as_json,
                 headers=headers, what="matches")


def request_body(sctx, identifier: str, as_json: bool) -> None:
    """The same answer at the same moment whatever happened (docs/decisions.md): a message goes
    to a detached process, and the answer waits until a fixed time after the request began.
    With portal write-back on, the whole request goes to that process (its portal round trips
    happen only when an account matched), and the message follows the portal's CHECKWORD there."""
    import time

    from ..services import outbox
    from ..services.tokens import REQUEST_FLOOR, accept_request, accepts_after_answer, answer, request

    started = time.monotonic()
    if sctx.detach and accepts_after_answer(sctx):
        sctx.key()  # a missing key file fails every request alike, as accept_request does
        result, messages = answer(), []
        outbox.run_detached(sctx, lambda child: request(child, identifier))
    else:
        result, messages = accept_request(sctx, identifier)
        if sctx.detach:
            outbox.deliver_detached(sctx, messages)
    if sctx.detach:
        time.sleep(max(0.0, started + REQUEST_FLOOR - time.monotonic()))
    if as_json:
        render.emit_json(result)
    else:
        render.line(result["message"])
    sys.stdout.flush()
    if not sctx.detach:  # a library caller (tests' CliRunner): deliver here, after the answer
        for message_id in messages:
            outbox.deliver(sctx, message_id)


def redeem_body(make_ctx, login: str, *, control_string_stdin: bool, password_stdin: bool,
                password_env: str | None, as_json: bool) -> None:
    """Secrets first (stdin, env or prompt), then the store: a missing secret never opens it."""
    from ..errors import B24Error
    from ..services.recovery import redeem
    from .secret_input import SecretInput

    if password_stdin and password_env:
        raise B24Error("usage", "--password-stdin and --password-env exclude each other")
    secrets = SecretInput(stdin=control_string_stdin or password_stdin, env=password_env, as_json=as_json)
    sctx = None
    if control_string_stdin:
        secret = secrets.line(0, "the control string")
    else:
        secret = secrets.prompt("Control string or SMS code")
    if password_stdin:
        password = secrets.line(1 if control_string_stdin else 0, "the new password")
    elif password_env:
        password = secrets.from_env("the new password")
    else:
        from ..services.tokens import check
        from .users import policy_check

        sctx = make_ctx()
        check(sctx, login, secret)  # its state first (not using it): no password typed for a dead link
        password = secrets.prompt_new_password(policy_check(sctx))
    result = redeem(sctx or make_ctx(), login, secret, password)
    if as_json:
        render.emit_json(result)
    else:
        render.info(f"The password of {result['login']} was changed."
                    + (f" {result['confirmed']} is now confirmed." if result["confirmed"] else ""))
