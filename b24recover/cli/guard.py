"""What runs every command, with or without typer: the global options, the service context,
and the guard that turns any failure into its exit code and one clear message (never a
traceback, never local variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import B24Error, ExitCode
from . import render


@dataclass
class Globals:
    db: str
    config: str | None
    actor: str | None
    clock: object = None  # tests inject a FixedClock here
    detach: bool = False  # a command-line process (not a library caller) may deliver in a detached step
    db_source: str | None = None  # how --db was given, for `config show`


def make_ctx(g: Globals, *, store: bool = True):
    """Load settings and open the store named by the global options."""
    from ..clock import SystemClock
    from ..config import default_actor, load_settings
    from ..services.context import Ctx
    from ..store.db import open_store

    check_arguments([g.db, g.config, g.actor])
    settings = load_settings(g.config, g.db)
    opened = None
    if store:
        opened = open_store(settings.db_path)
        if "outbox" in (settings.mail.transport, settings.sms.transport):
            from ..private_files import check_outbox

            try:
                check_outbox(settings.outbox_dir)
            except B24Error:
                opened.close()
                raise
    if opened is not None and settings.portal.dsn:
        from ..store.portal import email_unique

        # A synced portal's own new_user_email_uniq_check overrides [accounts] unique_email.
        portal_rule = email_unique(opened.conn)
        if portal_rule is not None:
            settings.accounts.unique_email = portal_rule
    return Ctx(store=opened, settings=settings, clock=g.clock or SystemClock(), actor=default_actor(settings, g.actor),
               detach=g.detach)


def with_writebacks(call):
    """`call`, then the portal write-backs it queued (SPEC §6: applied after its commits, outside
    the store's write lock); one that could not be applied ends the command with exit 9."""
    def run():
        from ..services import writeback

        writeback.reset_command()
        try:
            result = call()
        finally:
            writeback.flush()
        failure = writeback.take_failure()
        if failure is not None:
            raise failure
        return result

    return run


def check_arguments(values) -> None:
    """Arguments are text: bytes that are not UTF-8 (Python hands them over as surrogate
    escapes) are invalid input, exit 5, before anything is looked up or changed."""
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, str) and any("\ud800" <= ch <= "\udfff" for ch in item):
                raise B24Error("invalid_input", f"the argument {ascii(item)} is not valid UTF-8",
                               hint="Give text in UTF-8 (check the terminal's or the script's encoding).")


def run_guarded(call, *, as_json: bool, db: str, passthrough: tuple = (),
                interrupts: tuple = (KeyboardInterrupt,)) -> int:
    """Run a command body; return its exit code."""
    try:
        call()
        return int(ExitCode.OK)
    except passthrough:
        raise
    except B24Error as exc:
        render.error(exc, as_json)
        return int(exc.exit_code)
    except interrupts:  # Ctrl-C, also at a prompt
        render.info("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:
        if os.environ.get("B24RECOVER_DEBUG") == "1":
            raise
        from ..store.db import is_store_error, translate_any

        if is_store_error(exc):  # a store that fails mid-command: exit 8, not a bug
            err = translate_any(exc, db)
            render.error(err, as_json)
            return int(err.exit_code)
        render.info(f"unexpected error ({type(exc).__name__}): {exc}; rerun with B24RECOVER_DEBUG=1 and report it")
        return int(ExitCode.BUG)
