"""What every command shares: error handling, the service context, reading secrets."""

from __future__ import annotations

import functools

import typer

from .guard import Globals, check_arguments, make_ctx, run_guarded, with_writebacks  # noqa: F401  (Globals is re-exported for tests)
from .secret_input import SecretInput  # noqa: F401  (re-exported for the command modules)


def handle_errors(fn, *, check_text: bool = True):
    """Turn domain errors into their exit codes and one clear message; never a traceback.
    Arguments that are not UTF-8 are refused first (invalid_input), unless `check_text` is off."""

    def body(args, kwargs):
        if check_text:
            check_arguments([v for k, v in kwargs.items() if k != "ctx"])
        return fn(*args, **kwargs)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tctx = kwargs.get("ctx")
        root = tctx.find_root().obj if tctx is not None else None
        code = run_guarded(with_writebacks(lambda: body(args, kwargs)), as_json=bool(kwargs.get("as_json")),
                           db=root.db if root is not None else "the store",
                           passthrough=(typer.Exit,), interrupts=(KeyboardInterrupt, typer.Abort))
        if code:
            raise typer.Exit(code)

    return wrapper


def handle_errors_uniform(fn):
    """handle_errors for `token request`: its identifier goes to the service whatever it is,
    which answers the same for every input (SPEC §2), undecodable bytes included."""
    return handle_errors(fn, check_text=False)


FORMAT = typer.Option(None, "--format", "-o", metavar="table|tsv|csv|json",
                      help="Output format (default: table on a terminal, tsv when piped).")
NO_HEADERS = typer.Option(False, "--no-headers", help="No heading line (table, tsv, csv).")


def service_ctx(tctx: typer.Context, *, store: bool = True):
    """The service context for the global options; the store closes with the command."""
    ctx = make_ctx(tctx.find_root().obj, store=store)
    if ctx.store is not None:
        tctx.find_root().call_on_close(ctx.store.close)
    return ctx
