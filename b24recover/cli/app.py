"""The root command: global options and the command groups."""

from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from . import render
from .runtime import Globals, handle_errors, service_ctx

HELP = """Get people back into their Bitrix24 accounts: find a forgotten login, send a control
string (recovery link or SMS code), reset passwords, link addresses, and keep token tables clean.

Examples:

  b24recover init

  b24recover lookup "8 (912) 345-67-89"

  b24recover token request anna@example.com
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"b24recover {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: str = typer.Option("b24recover.db", "--db", envvar="B24RECOVER_DB", help="The SQLite store."),
    config: Optional[str] = typer.Option(None, "--config", envvar="B24RECOVER_CONFIG",
                                         help="TOML config (default ./b24recover.toml when it exists)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who is acting, for the audit trail "
                                        "(default: B24RECOVER_ACTOR, the config's actor, or the OS user)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    if ctx.obj is None:
        ctx.obj = Globals(db=db, config=config, actor=actor)
    else:  # tests pass a Globals with an injected clock; the command line still names the store
        ctx.obj.db, ctx.obj.config, ctx.obj.actor = db, config, actor


@app.command()
@handle_errors
def init(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Create or upgrade the store (idempotent) and the secret key file beside it.

    Example: b24recover --db /var/lib/b24recover/users.db init
    """
    from ..services.setup import init_all

    result = init_all(service_ctx(ctx, store=False))
    if as_json:
        render.emit_json(result)
    else:
        render.fields([("store", result["db"]), ("schema version", result["schema_version"]),
                       ("migrations applied", result["applied"]), ("key file", result["key_file"]),
                       ("outbox", result["outbox"])], title="Store ready.")


@app.command()
@handle_errors
def lookup(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="A login, email, phone number (any spelling) or name."),
    by: str = typer.Option("auto", "--by", help="auto, login, email, phone or name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Find accounts by login, email, phone or name.

    Examples: b24recover lookup anna@example.com; b24recover lookup "8 912 345-67-89";
    b24recover lookup Ivanova --by name
    """
    from ..services.lookup import lookup as find

    matches = find(service_ctx(ctx), query, by)
    if as_json:
        render.emit_json({"matches": matches})
    else:
        render.table(render.ACCOUNT_COLUMNS, matches)


from . import tokens, users  # noqa: E402  (registers the command groups)

app.add_typer(users.app, name="user", help="Add, import, show, list, update, block and unblock accounts.")
app.add_typer(tokens.app, name="token", help="Request, issue, list, check and revoke control strings.")
app.add_typer(tokens.outbox_app, name="outbox", help="Messages and their delivery; retry the failed ones.")
app.command("redeem")(handle_errors(tokens.redeem))

from . import helpdesk  # noqa: E402

app.command("link")(handle_errors(helpdesk.link))
app.command("diagnose")(handle_errors(helpdesk.diagnose))

from . import policy  # noqa: E402

app.add_typer(policy.app, name="policy", help="Show the password policy or check a password against it.")
