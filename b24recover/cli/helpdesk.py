"""`link` and `diagnose`: the helpdesk's commands."""

from __future__ import annotations

from typing import Optional

import typer

from . import render
from .runtime import service_ctx


def link(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    email: Optional[str] = typer.Option(None, "--email", help="Attach this email."),
    phone: Optional[str] = typer.Option(None, "--phone", help="Attach this phone number."),
    social: Optional[str] = typer.Option(None, "--social", metavar="PROVIDER:SUBJECT", help="Attach a social identity."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Attach at once without confirmation (audited)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done and print the portal statements "
                                                          "this would run (secrets masked); change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Attach an email, phone or social identity to an account.

    By default the address stays pending and a control string goes to it; redeeming it confirms
    the address and sets the password (the way in for social-network-only accounts).

    Examples:

    \b
      b24recover link vk_48151623 --email dmitry.orlov@example.ru
      b24recover link peter.smith --phone "+1 415 555 0199" --no-verify
      b24recover link anna.ivanova --email anna.second@example.ru --dry-run
    """
    from ..errors import B24Error
    from ..services.linking import link as do_link

    if dry_run:
        from ..services.linking import preview
        from .portal_cmds import show_dry_run

        return show_dry_run([preview(service_ctx(ctx), login, email=email, phone=phone, social=social,
                                     no_verify=no_verify)], as_json)

    result = do_link(service_ctx(ctx), login, email=email, phone=phone, social=social, no_verify=no_verify)
    if as_json:
        render.emit_json(result)
    elif result["state"] == "pending":
        d = result.get("delivery") or {}
        render.info(f"{result['address']} is pending for {result['login']}; a control string was sent to it "
                    f"({d.get('status')}). Redeeming it confirms the address and sets the password.")
    else:
        render.info(f"{result['address']} is linked to {result['login']}.")
    delivery = result.get("delivery")
    if delivery and delivery["status"] == "failed":
        raise B24Error("delivery_failed", f"delivery to {delivery['recipient']} failed: {delivery.get('error')}")


def diagnose(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The helpdesk view: why this person cannot get in, and what to do, in order.

    Examples:

    \b
      b24recover diagnose anna.ivanova
      b24recover diagnose vk_48151623 --json
    """
    from ..services.diagnose import diagnose as do_diagnose

    result = do_diagnose(service_ctx(ctx), login)
    if as_json:
        render.emit_json(result)
        return
    render.line(f"{result['login']}:")
    if result.get("portal"):
        from ..services.portal_views import last_read_text

        render.line(f"({last_read_text(result['portal'])})")
    for number, f in enumerate(result["findings"], start=1):
        render.line(f"{number}. [{f['code']}] {f['message']}\n   -> {f['action']}")
