"""`user ...`: accounts."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import render
from .runtime import FORMAT, NO_HEADERS, SecretInput, handle_errors, service_ctx

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")
LIST_LIMIT = 1000
DRY_RUN = typer.Option(False, "--dry-run", help="Print the portal statements this would run and change nothing.")


def read_new_password(secrets: SecretInput, check=None) -> str:
    """From stdin, the environment, or a prompt that checks the policy (`check`) before the confirmation."""
    if secrets.stdin:
        return secrets.line(0, "the new password")
    if secrets.env:
        return secrets.from_env("the new password")
    return secrets.prompt_new_password(check)


def policy_check(sctx, existing: str | None = None, **account):
    """A check for prompt_new_password: an existing account's (its details and history), or the
    given details of a new one, or (neither) the policy alone."""
    def check(password: str) -> None:
        from ..errors import B24Error
        from ..services.policy import check as check_password, enforce

        if existing is None:
            enforce(sctx.settings.policy, password, **account)
            return
        found = check_password(sctx, password, existing)["violations"]
        if found:
            raise B24Error("password_policy", "the password does not meet the policy: "
                           + "; ".join(v["message"] for v in found), violations=found)

    return check


@app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The login name."),
    email: Optional[str] = typer.Option(None, "--email", metavar="EMAIL", help="The email address (a login too)."),
    phone: Optional[str] = typer.Option(None, "--phone", metavar="PHONE", help="Any common spelling; stored as E.164."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="First name."),
    last_name: Optional[str] = typer.Option(None, "--last-name", metavar="NAME", help="Last name."),
    lang: Optional[str] = typer.Option(None, "--lang", metavar="LANG", help="en, ru, de, it or pt."),
    social: List[str] = typer.Option([], "--social", metavar="PROVIDER:SUBJECT", help="PROVIDER:SUBJECT; repeatable."),
    no_password: bool = typer.Option(False, "--no-password", help="A social-only account (needs --social)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    password_env: Optional[str] = typer.Option(None, "--password-env", metavar="VAR",
                                               help="Read the password from this environment variable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the account and say what would be added "
                                                          "(no password is read); change nothing."),
    as_json: bool = JSON,
):
    """Add an account.

    Examples:

    \b
      printf '%s\\n' "$PW" | b24recover user add anna --email anna@example.com --password-stdin
      b24recover user add vk_10442 --social vkontakte:10442 --no-password --lang ru
      b24recover user add boris --email boris@example.com --dry-run
    """
    from ..errors import B24Error
    from ..services import accounts

    if no_password:  # before any prompt
        accounts.require_password_or_social(False, social)
    if no_password and (password_stdin or password_env):
        raise B24Error("usage", "--no-password cannot be combined with --password-stdin or --password-env")
    sctx = service_ctx(ctx)
    acc = accounts.prepare(sctx, login, email, phone, name, last_name, lang, social)
    if dry_run:
        from .portal_cmds import show_dry_run

        return show_dry_run([accounts.preview_add(sctx, acc, no_password)], as_json)
    new = None
    if not no_password:
        from ..services.credentials import prepare_password

        password = read_new_password(SecretInput(stdin=password_stdin, env=password_env, as_json=as_json),
                                     policy_check(sctx, login=acc.login, name=acc.name, last_name=acc.last_name,
                                                  email=acc.email))
        new = prepare_password(sctx, password, None, login=acc.login, name=acc.name,
                               last_name=acc.last_name, email=acc.email)
    view = accounts.add_user(sctx, acc, new)
    if as_json:
        render.emit_json(view)
    else:
        render.account(view)
        render.info(f"Account {view['login']} added.")


@app.command("show")
@handle_errors
def show(ctx: typer.Context, login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."), as_json: bool = JSON):
    """Everything about one account: identifiers, sign-in methods, state, control strings,
    last messages and recent audit events. Never a secret.

    Examples:

    \b
      b24recover user show anna.ivanova
      b24recover user show vk_48151623 --json
    """
    from ..services.accounts import show_user

    view = show_user(service_ctx(ctx), login)
    if as_json:
        render.emit_json(view)
        return
    render.account(view)
    render.fields([("password hash", view["password_scheme"] or "none"),
                   ("failed attempts", view["failed_attempts"]),
                   ("created", view["created_at"]), ("password changed", view["password_changed_at"])])
    if view.get("portal"):
        from ..services.portal_views import last_read_text

        render.fields([("portal", last_read_text(view["portal"]))])
    if view["social_identities"]:
        render.table([("provider", "Provider"), ("subject", "Subject")], view["social_identities"],
                     title="Social identities")
    if view["control_strings"]:
        render.table([("id", "Id"), ("kind", "Kind"), ("channel", "Channel"), ("state", "State"),
                      ("created_at", "Created"), ("expires_at", "Expires")], view["control_strings"],
                     title="Control strings")
    if view["messages"]:
        render.table([("id", "Id"), ("channel", "Channel"), ("recipient", "To"), ("status", "Status"),
                      ("error", "Error"), ("created_at", "Created")], view["messages"], title="Messages")
    if view["events"]:
        render.table([("at", "At"), ("actor", "Actor"), ("action", "Action")], view["events"],
                     title="Recent events")


@app.command("list")
@handle_errors
def list_(
    ctx: typer.Context,
    social_only: bool = typer.Option(False, "--social-only", help="Only accounts without a password that sign in through a social network."),
    blocked: bool = typer.Option(False, "--blocked", help="Only blocked accounts."),
    must_change: bool = typer.Option(False, "--must-change", help="Only accounts that must change their password."),
    limit: int = typer.Option(LIST_LIMIT, "--limit", metavar="N", help="At most N accounts (0: all)."),
    fmt: Optional[str] = FORMAT,
    no_headers: bool = NO_HEADERS,
    as_json: bool = JSON,
):
    """List accounts by login. On a terminal, long listings go through $PAGER (less -FRX).

    Examples:

    \b
      b24recover user list --social-only --json
      b24recover user list --blocked --format csv --no-headers
      b24recover user list --limit 0 --format tsv
    """
    from ..services.accounts import count_users, list_users
    from . import listing

    listing.check(limit, fmt)
    sctx = service_ctx(ctx)
    filters = dict(social_only=social_only, blocked=blocked, must_change=must_change)
    listing.emit("accounts", render.ACCOUNT_COLUMNS, list_users(sctx, limit=limit, **filters), limit=limit,
                 fmt=fmt, as_json=as_json, headers=not no_headers, what="accounts",
                 remaining=lambda shown: count_users(sctx, **filters) - shown)


@app.command("update")
@handle_errors
def update(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    email: Optional[str] = typer.Option(None, "--email", metavar="EMAIL", help="A new email address."),
    clear_email: bool = typer.Option(False, "--clear-email", help="Remove the email address."),
    phone: Optional[str] = typer.Option(None, "--phone", metavar="PHONE", help="A new phone number (any spelling)."),
    clear_phone: bool = typer.Option(False, "--clear-phone", help="Remove the phone number."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="First name."),
    last_name: Optional[str] = typer.Option(None, "--last-name", metavar="NAME", help="Last name."),
    lang: Optional[str] = typer.Option(None, "--lang", metavar="LANG", help="en, ru, de, it or pt."),
    rename: Optional[str] = typer.Option(None, "--rename", metavar="NEW", help="A new login."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
):
    """Change an account. Changing the login, email or phone revokes active control strings.

    Examples:

    \b
      b24recover user update anna.ivanova --email anna.petrova@example.ru
    """
    from ..errors import B24Error
    from ..services.accounts import update_user

    if email is not None and clear_email:
        raise B24Error("usage", "--email and --clear-email exclude each other")
    if phone is not None and clear_phone:
        raise B24Error("usage", "--phone and --clear-phone exclude each other")
    if dry_run:
        from ..services import identifiers as ids
        from ..services.writeback import preview
        from .portal_cmds import show_dry_run

        sctx = service_ctx(ctx)
        plans = []
        if email is not None or clear_email:
            plans.append(preview(sctx, login, "email", email=ids.normalize_email(email)[0] if email is not None else None))
        if phone is not None or clear_phone:
            number = ids.normalize_phone(phone, sctx.settings.default_country) if phone is not None else None
            plans.append(preview(sctx, login, "phone", phone=number, confirmed=False))
        for extra in plans[1:]:  # one account: one plan, its statements in the order they run
            plans[0]["statements"] += extra["statements"]
        return show_dry_run(plans[:1] or [preview(sctx, login, None)], as_json)
    view = update_user(service_ctx(ctx), login, email=email, clear_email=clear_email, phone=phone,
                       clear_phone=clear_phone, name=name, last_name=last_name, lang=lang, rename=rename)
    if as_json:
        render.emit_json(view)
    else:
        render.account(view)
        if view["revoked"]:
            render.info(f"{view['revoked']} active control string(s) of {view['login']} revoked by the change "
                        "(Bitrix behaviour): send a new one if needed.")


def _block(ctx, login: str, blocked: bool, as_json: bool, dry_run: bool = False) -> None:
    from ..services.accounts import set_blocked

    if dry_run:
        from ..services.writeback import preview
        from .portal_cmds import show_dry_run

        return show_dry_run([preview(service_ctx(ctx), login, "blocked", blocked=blocked)], as_json)
    view = set_blocked(service_ctx(ctx), login, blocked)
    if as_json:
        render.emit_json(view)
    else:
        render.info(f"Account {view['login']} is {view['state']}.")


@app.command("block")
@handle_errors
def block(ctx: typer.Context, login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
          dry_run: bool = DRY_RUN, as_json: bool = JSON):
    """Block an account; its active control strings are revoked and no new ones are sent.

    Examples:

    \b
      b24recover user block anna.ivanova
    """
    _block(ctx, login, True, as_json, dry_run)


@app.command("unblock")
@handle_errors
def unblock(ctx: typer.Context, login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
            dry_run: bool = DRY_RUN, as_json: bool = JSON):
    """Unblock an account.

    Examples:

    \b
      b24recover user unblock anna.ivanova
    """
    _block(ctx, login, False, as_json, dry_run)

from .user_import import import_users  # noqa: E402
app.command("import")(import_users)
