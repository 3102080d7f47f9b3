"""`policy ...`: the password policy, and a check of one password against it."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from . import render
from .runtime import SecretInput, handle_errors, service_ctx

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")


@app.command("show")
@handle_errors
def show(ctx: typer.Context, as_json: bool = JSON):
    """Print the password policy in force: every rule, its value and its Bitrix name.

    Examples:

    \b
      b24recover policy show
      b24recover policy show --json
    """
    from ..services.policy import describe

    view = describe(service_ctx(ctx, store=False).settings.policy)
    if as_json:
        render.emit_json(view)
        return
    rows = [{"rule": r["rule"].replace("_", " "), "setting": r["text"], "bitrix": r["bitrix_name"]}
            for r in view["rules"]]
    # The title goes out on its own line so that piped output carries the preset as well.
    sys.stdout.write(f"Password policy: {_policy_title(view)}\n")
    render.table([("rule", "Rule"), ("setting", "Setting"), ("bitrix", "Bitrix name")], rows)


def _policy_title(view: dict) -> str:
    """Say "NIST defaults" only when the rules are the defaults; otherwise name what differs."""
    from ..config import PolicySettings
    from ..services.policy import describe

    if view["preset"]:
        return f"Bitrix preset {view['preset']!r}"
    default = describe(PolicySettings())["bitrix"]
    changed = [f"{k} = {v}" for k, v in view["bitrix"].items() if default.get(k) != v]
    return "NIST defaults (no Bitrix preset)" if not changed else "custom (" + ", ".join(changed) + ")"


def _read_password(as_json: bool) -> str:
    secrets = SecretInput(stdin=True, as_json=as_json)
    if sys.stdin is not None and sys.stdin.isatty():
        # Reading a terminal line would echo the password: ask with a hidden prompt instead.
        return secrets.prompt("Password to check")
    return secrets.line(0, "the password")


def _print_report(result: dict) -> None:
    out = sys.stdout
    if result["violations"]:
        out.write("The password does not meet the policy:\n")
        for v in result["violations"]:
            out.write(f"  - {v['message']}\n")
    else:
        out.write("The password meets the policy.\n")
    s = result["strength"]
    out.write(f"Strength: {s['score']} of 4 ({s['label']}); offline guessing would take {s['crack_time']}.\n")
    if s["warning"]:
        out.write(f"Warning: {s['warning']}\n")
    for tip in s["suggestions"]:
        out.write(f"Tip: {tip}\n")
    out.flush()


@app.command("check")
@handle_errors
def check(
    ctx: typer.Context,
    login: Optional[str] = typer.Option(None, "--login", metavar="LOGIN",
                                        help="Also check against this account's details and previous passwords."),
    as_json: bool = JSON,
):
    """Check a password read from stdin (one line) against the policy: every violation, and a
    strength estimate with advice. Exit 6 when the policy refuses it. The password is never echoed.

    Examples:

    \b
      printf '%s\\n' "$PW" | b24recover policy check
      printf '%s\\n' "$PW" | b24recover policy check --login anna.ivanova --json
    """
    from ..errors import B24Error
    from ..services.policy import check as check_password

    sctx = service_ctx(ctx, store=login is not None)
    password = _read_password(as_json)
    result = check_password(sctx, password, login)
    if as_json:
        render.emit_json(result)
    else:
        _print_report(result)
    if result["violations"]:
        raise B24Error(
            "password_policy",
            "the password does not meet the policy: " + "; ".join(v["message"] for v in result["violations"]),
            violations=result["violations"],
        )
