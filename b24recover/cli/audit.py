"""`audit tokens` and `audit log`: stale control strings, their purge, and the audit trail.

Made for cron: when not on a terminal these commands print nothing unless something is wrong
(or --verbose / --json asks for it), so cron mails only on trouble.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Optional

import typer

from ..errors import B24Error
from . import render
from .runtime import FORMAT, NO_HEADERS, handle_errors, service_ctx

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Print the summary even when not on a terminal.")
EVENT_COLUMNS = [("id", "Id"), ("at", "At"), ("actor", "Actor"), ("action", "Action"), ("login", "Login"),
                 ("details", "Details")]


@contextmanager
def _progress(enabled: bool, what: str):
    """A progress bar on stderr when it is a terminal; yields progress(done, total) or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield update


@app.command("tokens")
@handle_errors
def tokens(
    ctx: typer.Context,
    older_than: Optional[str] = typer.Option(
        None, "--older-than", metavar="DURATION",
        help="Retention: count what ended or expired longer ago than this (default: tokens.retention, 30d)."),
    purge: bool = typer.Option(False, "--purge", help="Delete them, in short transactions that block nobody for long."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --purge: say what would be deleted, delete nothing."),
    check: bool = typer.Option(False, "--check", help="Exit 10 when stale control strings exist (for monitoring)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, max=100000, metavar="N",
        help="Rows per delete transaction (default: from 2,000, sized so each holds the lock about 0.2 s at most)."),
    verbose: bool = VERBOSE,
    as_json: bool = JSON,
):
    """Stale control strings (superseded, used, revoked, expired) older than the retention.

    Active control strings and those an undelivered message still carries are never touched.
    --purge is idempotent: an interrupted run is finished by the next one.

    Examples:

    \b
      b24recover audit tokens
      b24recover audit tokens --purge --older-than 90d
      b24recover audit tokens --check --json   # monitoring: exit 10 when some exist
    """
    from ..services import audit as svc

    if dry_run and not purge:
        raise B24Error("usage", "--dry-run goes with --purge")
    if check and purge:
        raise B24Error("usage", "--check only counts; run --purge on its own")
    sctx = service_ctx(ctx)
    older = svc.parse_older_than(older_than)
    if purge:
        with _progress(not as_json and not dry_run and render.is_tty(sys.stderr), "purging") as progress:
            report = svc.purge_tokens(sctx, older, dry_run=dry_run, batch=batch_size, progress=progress)
    else:
        report = svc.stale_tokens(sctx, older)
    if as_json:
        render.emit_json(report)
    elif render.is_tty() or verbose or not (purge or check):
        _token_summary(report, purge)
    if check:
        svc.check_stale(report)


def _token_summary(report: dict, purge: bool) -> None:
    stale = report["stale"]
    if purge and not report["dry_run"]:
        done = report["purged_by_state"]
        parts = ", ".join(f"{state} {n}" for state, n in done.items() if n) or "nothing was stale"
        render.line(f"Purged {report['purged']} control string(s) older than {report['older_than']} "
                   f"({parts}) in {report['batches']} batch(es), {report.get('seconds', 0):.1f} s.")
    else:
        title = "Would purge" if purge else "Stale control strings"
        render.fields([*stale.items(), ("total", report["total"])],
                      title=f"{title} (ended or expired before {report['cutoff']}, older than {report['older_than']}):")
    if report["held"]:
        render.line(f"{report['held']} more are kept while a message carrying them is not delivered yet "
                   "(b24recover outbox list --status failed).")


@app.command("log")
@handle_errors
def log(
    ctx: typer.Context,
    login: Optional[str] = typer.Option(None, "--login", metavar="LOGIN", help="Only events about this login."),
    action: Optional[str] = typer.Option(None, "--action", metavar="ACTION",
                                         help="Only this action, e.g. redeem.failed or token.issue."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN",
                                        help="Only events since then: 2h, 30d, 2026-11-01 or 2026-11-01T10:00:00Z."),
    limit: int = typer.Option(100, "--limit", min=0, metavar="N", help="The newest N events (0: all)."),
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain of the whole trail; exit 10 if broken."),
    fmt: Optional[str] = FORMAT,
    no_headers: bool = NO_HEADERS,
    verbose: bool = VERBOSE,
    as_json: bool = JSON,
):
    """The append-only audit trail, oldest first; --verify checks its hash chain.

    Examples:

    \b
      b24recover audit log --login anna.ivanova --since 2h
      b24recover audit log --action user.import --since 2026-11-01 --json
      b24recover audit log --verify   # exit 10 naming the first broken event
    """
    from ..services import audit as svc

    sctx = service_ctx(ctx)
    if verify:
        if login is not None or action is not None or since is not None:
            raise B24Error("usage", "--verify checks the whole trail; it takes no --login, --action or --since")
        with _progress(not as_json and render.is_tty(sys.stderr), "verifying") as progress:
            result = svc.verify_chain(sctx, progress)
        if as_json:
            render.emit_json(result)
        elif result["verified"] and (render.is_tty() or verbose):
            head = result["head"]
            render.line(f"The audit trail is intact: {result['events']} event(s)"
                       + (f", the newest #{head['id']} with hash {head['hash']}." if head else "."))
        svc.check_chain(result)
        return
    from . import listing

    listing.check(limit, fmt)
    rows = svc.events(sctx, login=login, action=action, since=since, limit=limit + 1 if limit else 0)
    more = bool(limit) and len(rows) > limit
    rows = rows[1:] if more else rows  # oldest first: the extra one is the oldest
    if as_json or fmt == "json":
        render.emit_json({"events": rows, **({"more": True} if more else {})})
        return
    shown = ({**r, "details": json.dumps(r["details"], ensure_ascii=False, separators=(",", ":"))} for r in rows)
    render.table(EVENT_COLUMNS, shown, fmt=fmt, headers=not no_headers, page=True)
    if more:
        render.more_note(limit, None, "older events")
