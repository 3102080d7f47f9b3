"""What every command shares: error handling, the service context, reading secrets."""

from __future__ import annotations

import functools

import typer

from .guard import Globals, make_ctx, run_guarded  # noqa: F401  (Globals is re-exported for tests)
from .secret_input import SecretInput  # noqa: F401  (re-exported for the command modules)


def handle_errors(fn):
    """Turn domain errors into their exit codes and one clear message; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tctx = kwargs.get("ctx")
        root = tctx.find_root().obj if tctx is not None else None

        def run():
            from ..services import writeback

            writeback.reset_command()
            try:
                fn(*args, **kwargs)
            finally:
                writeback.flush()  # the command's portal write-backs, after its commits
            failure = writeback.take_failure()
            if failure is not None:
                raise failure

        code = run_guarded(run, as_json=bool(kwargs.get("as_json")),
                           db=root.db if root is not None else "the store",
                           passthrough=(typer.Exit,), interrupts=(KeyboardInterrupt, typer.Abort))
        if code:
            raise typer.Exit(code)

    return wrapper


def service_ctx(tctx: typer.Context, *, store: bool = True):
    """The service context for the global options; the store closes with the command."""
    ctx = make_ctx(tctx.find_root().obj, store=store)
    if ctx.store is not None:
        tctx.find_root().call_on_close(ctx.store.close)
    return ctx
