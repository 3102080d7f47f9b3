"""`token ...`, `redeem` and `outbox ...`: control strings and their messages."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import B24Error
from . import render
from .runtime import FORMAT, NO_HEADERS, SecretInput, handle_errors, handle_errors_uniform, service_ctx

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
outbox_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")
TOKEN_COLUMNS = [("id", "Id"), ("login", "Login"), ("kind", "Kind"), ("channel", "Channel"), ("state", "State"),
                 ("recipient", "Recipient"), ("created_at", "Created"), ("expires_at", "Expires")]


def _ttl(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    from ..clock import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise B24Error("usage", str(exc)) from None


@app.command("request")
@handle_errors_uniform
def request(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., metavar="IDENTIFIER", help="Login, email or phone number as the person typed it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what a request does and print the portal statements "
                                                          "it would run (secrets masked), the same for any "
                                                          "identifier; change nothing."),
    as_json: bool = JSON,
):
    """The portal's "Forgot your password?": send a control string to the account's address.

    The answer and exit code are the same whether or not an account matched, is blocked or is
    throttled (the reason is in the audit trail), so the form cannot be used to find accounts.

    Examples:

    \b
      b24recover token request anna.ivanova@example.ru
      b24recover token request "8 912 345-67-89" --json
      b24recover token request anna.ivanova@example.ru --dry-run
    """
    from .portal import request_body

    if dry_run:
        from ..services.tokens import preview_request
        from .portal_cmds import show_dry_run

        return show_dry_run([preview_request(service_ctx(ctx), identifier)], as_json)

    request_body(service_ctx(ctx), identifier, as_json)


@app.command("issue")
@handle_errors
def issue(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    via: str = typer.Option(..., "--via", help="email, sms, qr (draw the link as a QR code) or none (print the link once)."),
    ttl: Optional[str] = typer.Option(None, "--ttl", metavar="DURATION", help="Lifetime, e.g. 30m or 24h."),
    force: bool = typer.Option(False, "--force", help="Pass the throttle (audited)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the portal statements this would run (secrets "
                                                          "masked) and change nothing."),
    as_json: bool = JSON,
):
    """An operator sends a control string; any earlier one stops working.

    Examples:

    \b
      b24recover token issue anna.ivanova --via email
      b24recover token issue giulia.rossi --via qr --ttl 30m   # for a person at the desk
    """
    from ..services.tokens import issue as do_issue

    if dry_run:
        from ..services.writeback import preview
        from .portal_cmds import show_dry_run

        return show_dry_run([preview(service_ctx(ctx), login, None if via == "sms" else "checkword")], as_json)
    issued = do_issue(service_ctx(ctx), login, via, _ttl(ttl), force)
    view = issued.view
    if as_json:
        render.emit_json(view)
    elif issued.link:
        if via == "qr":
            _draw_qr(issued.link)
        render.line(issued.link)
        render.info(f"Control string {view['id']} for {view['login']} valid until {view['expires_at']}. "
                    "It is shown only this once.")
    else:
        d = view.get("delivery", {})
        render.info(f"Control string {view['id']} for {view['login']}: {view['kind']} via {view['channel']} to "
                    f"{d.get('recipient')}: {d.get('status')}; valid until {view['expires_at']}.")
    delivery = view.get("delivery")
    if delivery and delivery["status"] == "failed":
        raise B24Error("delivery_failed", f"delivery to {delivery['recipient']} failed: {delivery.get('error')}")


def _draw_qr(link: str) -> None:
    """The QR code on a terminal wide enough for it; otherwise say why only the link is shown."""
    from . import qr

    columns = render.terminal_size()[0] if render.is_tty() else 10**6  # piped: drawn for whoever shows it
    if not qr.draw(link, columns):
        render.info(f"The terminal is {columns} columns wide and the QR code needs {qr.width(link)}: "
                    "give the person the link below (or widen the window next time).")


@app.command("list")
@handle_errors
def list_(
    ctx: typer.Context,
    login: Optional[str] = typer.Argument(None, metavar="[LOGIN]", help="Only this account's."),
    state: str = typer.Option("all", "--state", help="active, superseded, used, revoked, expired or all."),
    limit: int = typer.Option(200, "--limit", min=0, max=100000, metavar="N",
                              help="The newest N (default 200; 0: all)."),
    fmt: Optional[str] = FORMAT,
    no_headers: bool = NO_HEADERS,
    as_json: bool = JSON,
):
    """Control strings, newest first (never their secrets).

    Examples:

    \b
      b24recover token list anna.ivanova --state all --json
      b24recover token list --state active --format csv
    """
    from ..services.tokens import list_tokens
    from . import listing

    listing.check(limit, fmt)
    rows = list_tokens(service_ctx(ctx), login, state, limit + 1 if limit else 10**9)
    listing.emit("control_strings", TOKEN_COLUMNS, rows, limit=limit, fmt=fmt, as_json=as_json,
                 headers=not no_headers, what="control strings")


@app.command("check")
@handle_errors
def check(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    control_string_stdin: bool = typer.Option(False, "--control-string-stdin", help="Read the control string or code from stdin."),
    as_json: bool = JSON,
):
    """Say what state a control string or code is in, without using it.

    Exit 0 when it is active; otherwise exit 6 with the reason (superseded, expired, used, ...).

    Examples:

    \b
      printf '%s\\n' "$CW" | b24recover token check anna.ivanova --control-string-stdin
    """
    from ..services.tokens import check as do_check

    secret = _read_control_string(SecretInput(stdin=control_string_stdin, as_json=as_json))
    try:
        view = do_check(service_ctx(ctx), login, secret)
    except B24Error as exc:
        if "control_string" in exc.details:
            view = exc.details.pop("control_string")
            if as_json:
                render.emit_json(view)
            else:
                render.line(f"{view['id']}\t{view['state']}")
        raise
    if as_json:
        render.emit_json(view)
    else:
        render.line(f"{view['id']}\t{view['state']}\tvalid until {view['expires_at']}")


@app.command("revoke")
@handle_errors
def revoke(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why (kept in the audit trail)."),
    as_json: bool = JSON,
):
    """Revoke every active control string of an account.

    Examples:

    \b
      b24recover token revoke anna.ivanova --reason "phone stolen"
    """
    from ..services.tokens import revoke as do_revoke

    result = do_revoke(service_ctx(ctx), login, reason)
    if as_json:
        render.emit_json(result)
    else:
        render.info(f"{result['revoked']} control string(s) of {result['login']} revoked.")


def _read_control_string(secrets: SecretInput) -> str:
    if secrets.stdin:
        return secrets.line(0, "the control string")
    return secrets.prompt("Control string or SMS code")


def redeem(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    control_string_stdin: bool = typer.Option(False, "--control-string-stdin",
                                              help="Read the control string or SMS code from stdin (line 1)."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the new password from stdin (line 2 with --control-string-stdin)."),
    password_env: Optional[str] = typer.Option(None, "--password-env", metavar="VAR",
                                               help="Read the new password from this environment variable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the portal statements this would run (secrets "
                                                          "masked) and change nothing."),
    as_json: bool = JSON,
):
    """Use a control string or SMS code to set a new password.

    Examples:

    \b
      b24recover redeem anna.ivanova   # at a terminal: asks for the control string, then the password twice
      printf '%s\\n%s\\n' "$CW" "$PW" | b24recover redeem anna.ivanova --control-string-stdin --password-stdin
    """
    from .portal import redeem_body

    if dry_run:
        from ..services.writeback import preview
        from .portal_cmds import show_dry_run

        # The account is not looked up: redeem must not tell which logins exist (SPEC §2).
        return show_dry_run([preview(service_ctx(ctx), None, "password", typed_login=login)], as_json)

    redeem_body(lambda: service_ctx(ctx), login, control_string_stdin=control_string_stdin,
                password_stdin=password_stdin, password_env=password_env, as_json=as_json)


@outbox_app.command("list")
@handle_errors
def outbox_list(
    ctx: typer.Context,
    status: Optional[str] = typer.Option(None, "--status", help="queued, sending, sent, failed or cancelled."),
    limit: int = typer.Option(100, "--limit", min=0, max=100000, metavar="N",
                              help="The newest N (default 100; 0: all)."),
    fmt: Optional[str] = FORMAT,
    no_headers: bool = NO_HEADERS,
    as_json: bool = JSON,
):
    """Messages and their delivery results, newest first (never the text of a message carrying a secret).

    Examples:

    \b
      b24recover outbox list --status failed
      b24recover outbox list --format tsv --no-headers
    """
    from ..services.outbox import list_messages
    from . import listing

    if status not in (None, "queued", "sending", "sent", "failed", "cancelled"):
        raise B24Error("usage", "--status must be queued, sending, sent, failed or cancelled")
    listing.check(limit, fmt)
    rows = list_messages(service_ctx(ctx), status, limit + 1 if limit else 10**9)
    if not as_json and fmt != "json":
        for row in rows:  # a claimed message shows until when its sender holds it
            if row["status"] == "sending":
                row["status"] = (f"sending (lease ended {row['lease_until']}; the next send retries it)"
                                 if row["lease_ended"] else f"sending (lease to {row['lease_until']})")
    listing.emit("messages", [("id", "Id"), ("channel", "Channel"), ("recipient", "Recipient"),
                              ("template", "Message"), ("status", "Status"), ("error", "Error"),
                              ("created_at", "Created"), ("sent_at", "Sent")], rows,
                 limit=limit, fmt=fmt, as_json=as_json, headers=not no_headers, what="messages")


@outbox_app.command("send")
@handle_errors
def outbox_send(ctx: typer.Context, as_json: bool = JSON):
    """Retry every queued and failed message. Exit 9 if some still fail.

    Examples:

    \b
      b24recover outbox send   # from cron every 5 minutes: quiet unless something failed
      b24recover outbox send --json
    """
    from ..services.outbox import send_pending

    result = send_pending(service_ctx(ctx))
    if as_json:
        render.emit_json(result)
    elif render.is_tty(sys.stderr):  # quiet under cron: it mails only on failure (below)
        render.info(f"{result['sent']} sent, {result['failed']} failed, {result['cancelled']} cancelled "
                    f"(of {result['total']}).")
    if result["failed"]:
        raise B24Error("delivery_failed", f"{result['failed']} message(s) could not be delivered",
                       hint="See b24recover outbox list --status failed; they will be retried by the next send.")
