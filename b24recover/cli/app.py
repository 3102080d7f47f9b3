"""The root command: global options and the command groups."""

from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from . import render
from .portal import LOOKUP_LIMIT
from .runtime import FORMAT, NO_HEADERS, Globals, handle_errors, service_ctx

HELP = """Get people back into their Bitrix24 accounts: find a forgotten login, send a control
string (recovery link or SMS code), reset passwords, link addresses, and keep token tables clean.

Examples:

\b
  b24recover init
  b24recover lookup "8 (912) 345-67-89"
  b24recover token request anna.ivanova@example.ru
  b24recover config show

Every command has --help with examples; the reference is docs/reference.md.
"""


def _version(value: bool):
    if value:
        typer.echo(f"b24recover {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    db: str = typer.Option("b24recover.db", "--db", envvar="B24RECOVER_DB", metavar="PATH|URL",
                           help="The store: a SQLite file, or postgresql://USER@HOST[:PORT]/DBNAME "
                                "(password from PGPASSWORD or ~/.pgpass)."),
    config: Optional[str] = typer.Option(None, "--config", envvar="B24RECOVER_CONFIG", metavar="PATH",
                                         help="TOML config (default: the first of ./b24recover.toml, "
                                              "$XDG_CONFIG_HOME/b24recover/b24recover.toml, /etc/b24recover/b24recover.toml)."),
    actor: Optional[str] = typer.Option(None, "--actor", metavar="NAME", help="Who is acting, for the audit trail "
                                        "(default: B24RECOVER_ACTOR, the config's actor, or the OS user)."),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version."),
):
    if ctx.obj is None:
        ctx.obj = Globals(db=db, config=config, actor=actor)
    else:  # main() and tests pass a Globals (detach, an injected clock); the command line names the store
        ctx.obj.db, ctx.obj.config, ctx.obj.actor = db, config, actor


def init(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Create or upgrade the store (idempotent) and the secret key file beside it.

    Examples:

    \b
      b24recover init
      b24recover --db users.db init
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
    query: str = typer.Argument(..., metavar="QUERY", help="A login, email, phone number (any spelling) or name."),
    by: str = typer.Option("auto", "--by", metavar="auto|login|email|phone|name", help="What the query is."),
    limit: int = typer.Option(LOOKUP_LIMIT, "--limit", metavar="N", help="At most N matches (0: all)."),
    fmt: Optional[str] = FORMAT,
    no_headers: bool = NO_HEADERS,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Find accounts by login, email, phone or name. No match is exit 3.

    Examples:

    \b
      b24recover lookup anna.ivanova@example.ru
      b24recover lookup "8 (912) 345-67-89"
      b24recover lookup Ivanova --by name --format csv
    """
    from .portal import lookup_body

    lookup_body(service_ctx(ctx), query, by, as_json, limit, fmt, not no_headers)


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
    "config": ("config_cmd", "app", "The effective settings and where each came from."),
    "completion": ("completion_cmd", "completion", None),
    "portal": ("portal_cmds", "app", "The portal's own database: status, sync and push (write-backs)."),
}
_GLOBAL_WITH_VALUE = ("--db", "--config", "--actor")


def _plain_metavars() -> None:
    """Usage lines show a required argument as LOGIN, like every other CLI, not typer's {LOGIN}."""
    from typer.core import TyperArgument

    if getattr(TyperArgument.make_metavar, "_plain", False):
        return
    original = TyperArgument.make_metavar

    def make_metavar(self, ctx, *, usage: bool = False) -> str:
        var = original(self, ctx, usage=usage)
        return var[1:-1] if var.startswith("{") and var.endswith("}") else var

    make_metavar._plain = True
    TyperArgument.make_metavar = make_metavar


def make_app(only: str | None = None) -> typer.Typer:
    """The root command with every command, or with just `only` when that names one."""
    import importlib

    _plain_metavars()
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
