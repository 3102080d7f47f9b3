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


def _version(value: bool):
    if value:
        typer.echo(f"b24recover {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    db: str = typer.Option("b24recover.db", "--db", envvar="B24RECOVER_DB", help="The SQLite store, or postgresql://USER@HOST[:PORT]/DBNAME (password from PGPASSWORD or ~/.pgpass)."),
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
    from .portal import lookup_body

    lookup_body(service_ctx(ctx), query, by, as_json)


# Every command, registered lazily: a run builds only the command it was asked for, so typer
# turns one function signature into click parameters instead of all of them (start-up time).
# name -> (module in b24recover.cli or None for this one, attribute, group help or None)
COMMANDS: dict[str, tuple[str | None, str, str | None]] = {
    "init": (None, "init", None),
    "user": ("users", "app", "Add, import, show, list, update, block and unblock accounts."),
    "lookup": (None, "lookup", None),
    "token": ("tokens", "app", "Request, issue, list, check and revoke control strings."),
    "redeem": ("tokens", "redeem", None),
    "reset": ("reset", "reset", None),
    "bulk": ("reset", "bulk_app", "Reset many accounts at once."),
    "passwd": ("reset", "passwd", None),
    "link": ("helpdesk", "link", None),
    "diagnose": ("helpdesk", "diagnose", None),
    "outbox": ("tokens", "outbox_app", "Messages and their delivery; retry the failed ones."),
    "policy": ("policy", "app", "Show the password policy or check a password against it."),
    "audit": ("audit", "app", "Stale control strings and the audit trail."),
}
_GLOBAL_WITH_VALUE = ("--db", "--config", "--actor")


def make_app(only: str | None = None) -> typer.Typer:
    """The root command with every command, or with just `only` when that names one."""
    import importlib

    root_app = typer.Typer(
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root_app.callback()(root)
    for name, (module, attr, group_help) in COMMANDS.items():
        if only in COMMANDS and name != only:
            continue
        owner = importlib.import_module(f"{__package__}.{module}") if module else globals()
        target = owner[attr] if module is None else getattr(owner, attr)
        if group_help is None:
            root_app.command(name)(handle_errors(target))
        else:
            root_app.add_typer(target, name=name, help=group_help)
    return root_app


def command_named(argv: list[str]) -> str | None:
    """The command word in argv, skipping the global options (and their values)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def __getattr__(name: str):
    if name == "app":  # the full application, for tests and documentation
        full = make_app()
        globals()["app"] = full
        return full
    raise AttributeError(name)
