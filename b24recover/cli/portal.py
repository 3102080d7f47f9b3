"""The bodies of `lookup`, `token request` and `redeem`: what a portal's forms and operators'
scripts call most. They are shared by the typer commands and by the fast path (cli/fast.py), so
both answer identically."""

from __future__ import annotations

import sys

from . import render


def lookup_body(sctx, query: str, by: str, as_json: bool) -> None:
    from ..services.lookup import lookup

    matches = lookup(sctx, query, by)
    if as_json:
        render.emit_json({"matches": matches})
    else:
        columns = render.ACCOUNT_COLUMNS
        if any(m.get("portal_id") is not None for m in matches):  # a synced store: when each was read
            columns = [*columns, ("portal_synced_at", "Read from portal")]
        render.table(columns, matches)


def request_body(sctx, identifier: str, as_json: bool) -> None:
    from ..services.tokens import request

    result = request(sctx, identifier)
    if as_json:
        render.emit_json(result)
    else:
        sys.stdout.write(result["message"] + "\n")


def redeem_body(make_ctx, login: str, *, control_string_stdin: bool, password_stdin: bool,
                password_env: str | None, as_json: bool) -> None:
    """Secrets first (stdin, env or prompt), then the store: a missing secret never opens it."""
    from ..errors import B24Error
    from ..services.recovery import redeem
    from .secret_input import SecretInput

    if password_stdin and password_env:
        raise B24Error("usage", "--password-stdin and --password-env exclude each other")
    secrets = SecretInput(stdin=control_string_stdin or password_stdin, env=password_env, as_json=as_json)
    if control_string_stdin:
        secret = secrets.line(0, "the control string")
    else:
        secret = secrets.prompt("Control string or SMS code")
    if password_stdin:
        password = secrets.line(1 if control_string_stdin else 0, "the new password")
    elif password_env:
        password = secrets.from_env("the new password")
    else:
        password = secrets.prompt_new_password()
    result = redeem(make_ctx(), login, secret, password)
    if as_json:
        render.emit_json(result)
    else:
        render.info(f"The password of {result['login']} was changed."
                    + (f" {result['confirmed']} is now confirmed." if result["confirmed"] else ""))
