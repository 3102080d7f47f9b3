"""`portal status` and `portal sync`: the portal's own database (SPEC §6)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from . import render
from .runtime import handle_errors, service_ctx

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")
SHOWN_REFUSED = 50


def _safe(text) -> str:
    """A value read from the portal, shown with control and bidi characters escaped."""
    import unicodedata

    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in str(text or ""))


@app.command("status")
@handle_errors
def status(ctx: typer.Context, as_json: bool = JSON):
    """The portal database: reachable or not, engine and version, character set, account count,
    the last sync, and write-backs pending and failed. Exit 8 when the portal is unreachable
    (the status is printed all the same).

    Examples:

    \b
      b24recover portal status          # needs a portal: [portal] dsn in the config
      b24recover portal status --json   # needs a portal
    """
    from ..services.portal_status import status as portal_status

    result, error = portal_status(service_ctx(ctx))
    if as_json:
        render.emit_json(result)
    else:
        _status_text(result)
    if error is not None:
        raise error


def _status_text(s: dict) -> None:
    reach = "yes" if s["reachable"] else "no"
    charset = s["charset"]
    if s["charset_matches"] is False:
        charset = f"{charset} (but [portal] charset is {s['configured_charset']}: passwords will not verify)"
    render.fields([
        ("portal", s["portal"]), ("reachable", reach), ("engine", s["engine"]), ("version", s["version"]),
        ("charset", charset), ("accounts in the portal", s["accounts"]),
        ("accounts read", s["synced_accounts"]), ("gone from the portal", s["gone"]),
        ("refused rows", s["refused"]), ("last sync", s["last_sync"]), ("last full sync", s["last_full_sync"]),
        ("interrupted sync", "yes (the next portal sync finishes it)" if s["sync_interrupted"] else "no"),
        ("email unique", s["email_unique"]), ("write-back", "on" if s["write"] else "off"),
        ("write-backs pending", s["pending"]), ("write-backs failed", s["failed"]),
    ], title="Portal database")
    render.info("write = true writes only: " + "; ".join(f"{t}: {', '.join(w)}" for t, w in s["writes"].items()))


@contextmanager
def _progress(enabled: bool):
    """A progress bar on stderr when it is a terminal; yields progress(done, total) or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("reading the portal"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sync", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command("sync")
@handle_errors
def sync(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="Re-read every portal account and mark the accounts "
                                                    "gone from the portal (they get no recovery)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read the portal and report what would change; "
                                                          "write nothing."),
    as_json: bool = JSON,
):
    """Read the portal's accounts into the store (never writing the portal): b_user with its
    sign-in phones, social identities and groups' security policy. Incremental by TIMESTAMP_X;
    --full re-reads all. Resumable: a sync that was interrupted is finished by the next one.
    Rows that cannot become accounts are listed with their portal ID and the reason.

    Examples:

    \b
      b24recover portal sync                 # needs a portal: [portal] dsn in the config
      b24recover portal sync --full --json   # needs a portal: nightly, from cron
    """
    from ..services.portal_sync import sync as run_sync

    sctx = service_ctx(ctx)
    with _progress(render.is_tty(sys.stderr) and not as_json) as progress:
        result = run_sync(sctx, full=full, dry_run=dry_run, progress=progress)
    if as_json:
        render.emit_json(result.to_json())
        return
    c = result.counts
    head = "Dry run, nothing was written" if dry_run else ("Full sync" if result.full else "Sync")
    if result.resumed:
        head += " (finished an interrupted run)"
    render.info(f"{head}: read {c['read']}, added {c['added']}, updated {c['updated']}, "
                f"unchanged {c['unchanged']}, gone {c['gone']}, refused {len(result.refused)}.")
    for r in result.refused[:SHOWN_REFUSED]:
        render.info(f"  portal ID {r['portal_id']} ({_safe(r['login'])}): {_safe(r['reason'])}")
    if len(result.refused) > SHOWN_REFUSED:
        render.info(f"  ... and {len(result.refused) - SHOWN_REFUSED} more refused rows (--json lists them).")


DRY_RUN = typer.Option(False, "--dry-run", help="Print the portal statements this would run (secrets "
                                                 "masked) and change nothing.")


def show_dry_run(plans: list[dict], as_json: bool) -> None:
    """The output of --dry-run on a writing command: the portal statements, per account."""
    if as_json:
        render.emit_json(plans[0] if len(plans) == 1 else {"dry_run": True, "accounts": plans})
        return
    for plan in plans:
        who = _safe(plan["login"]) if plan["login"] is not None else f"the identifier {_safe(plan.get('identifier'))}"
        where = f" (portal ID {plan['portal_id']})" if plan["portal_id"] is not None else ""
        render.info(f"Dry run for {who}{where}, nothing changed:"
                    + ("" if plan["statements"] else f" {plan.get('note', 'no portal statements')}"))
        for step in plan.get("local", []):
            typer.echo(f"  would: {_safe(step)}")
        for statement in plan["statements"]:
            typer.echo(f"  {_safe(statement)};")


@app.command("push")
@handle_errors
def push(ctx: typer.Context, as_json: bool = JSON):
    """Apply the portal write-backs still pending or failed (passwords, checkwords, blocks,
    emails, phones: SPEC §6), each exactly once however many pushes run at once. For cron, like
    'outbox send'. Exit 9 when some could still not be applied (they stay queued).

    Examples:

    \b
      b24recover portal push
      b24recover portal push --json   # e.g. every 5 minutes from cron
    """
    from ..errors import B24Error
    from ..services.writeback import push as run_push

    result = run_push(service_ctx(ctx))
    if as_json:
        render.emit_json(result)
    else:
        render.info(f"Portal write-backs: applied {result['done']}, failed {result['failed']}, left to another "
                    f"push {result['skipped']}; still pending {result['still_pending']}, failed {result['still_failed']}.")
    if result["failed"]:
        raise B24Error("portal_write_failed", f"{result['failed']} portal write-back(s) could not be applied; "
                       "they stay queued")
