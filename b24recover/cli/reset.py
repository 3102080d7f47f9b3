"""`reset`, `passwd` and `bulk reset`: setting passwords as an administrator or as the owner."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import B24Error
from . import render
from .portal_cmds import DRY_RUN, show_dry_run
from .runtime import SecretInput, handle_errors, service_ctx
from .users import policy_check, read_new_password

bulk_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

JSON = typer.Option(False, "--json", help="Print JSON.")


def _notice_line(notice: dict | None) -> str:
    if notice is None:
        return ""
    text = f" Notice to {notice['recipient']}: {notice['status']}."
    if notice["status"] == "failed":
        text += " It stays in the outbox; retry with: b24recover outbox send."
    return text


def reset(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    generate: bool = typer.Option(False, "--generate",
                                  help="Generate a random policy-compliant password and print it once on stdout."),
    temporary: bool = typer.Option(False, "--temporary", help="Force a change at the next sign-in."),
    no_notify: bool = typer.Option(False, "--no-notify", help="Do not send the password-changed notice."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why (kept in the audit trail)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
    password_env: Optional[str] = typer.Option(None, "--password-env", metavar="VAR",
                                               help="Read the new password from this environment variable."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
):
    """Administrator reset (Bitrix Settings > Users): set a new password for an account.

    The new password is asked twice, read from stdin or an environment variable, or generated
    with --generate (printed once on stdout, stored and logged nowhere). Active control strings
    stop working; the account gets a "password changed" notice unless --no-notify. Blocked
    accounts may be reset; they stay blocked.

    Examples:

    \b
      b24recover reset anna.ivanova --generate --temporary --reason "ticket 4711"
      printf '%s\\n' "$PW" | b24recover reset anna.ivanova --password-stdin
    """
    from ..services.admin import reset as do_reset

    if generate and (password_stdin or password_env):
        raise B24Error("usage", "--generate cannot be combined with --password-stdin or --password-env")
    if password_stdin and password_env:
        raise B24Error("usage", "--password-stdin and --password-env exclude each other")
    sctx = service_ctx(ctx)
    if dry_run:
        from ..services.writeback import preview

        return show_dry_run([preview(sctx, login, "password", expired=temporary)], as_json)
    password = None
    if not generate:
        password = read_new_password(SecretInput(stdin=password_stdin, env=password_env, as_json=as_json),
                                     policy_check(sctx, login))
    result = do_reset(sctx, login, password, generate=generate, temporary=temporary, notify=not no_notify,
                      reason=reason)
    if as_json:
        render.emit_json(result)
    elif generate:
        render.line(result["password"])
        render.info(f"New password of {result['login']} set; it is shown only this once."
                    + (" It must be changed at the next sign-in." if temporary else "")
                    + _notice_line(result["notice"]))
    else:
        render.info(f"The password of {result['login']} was reset."
                    + (" It must be changed at the next sign-in." if temporary else "")
                    + _notice_line(result["notice"]))


def passwd(
    ctx: typer.Context,
    login: str = typer.Argument(..., metavar="LOGIN", help="The account's login."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the current password (line 1) and the new one (line 2) from stdin."),
    password_env: Optional[str] = typer.Option(None, "--password-env", metavar="VAR",
                                               help="Read the new password from this environment variable."),
    current_password_env: Optional[str] = typer.Option(None, "--current-password-env", metavar="VAR",
                                                       help="Read the current password from this environment variable."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
):
    """Change a password knowing the current one: current, new, confirm.

    An imported Bitrix hash ($6$ SHA-512-crypt, salt + md5, md5) is accepted as the current
    password and replaced by bcrypt. A wrong current password exits 6 (password_incorrect) and
    counts in the account's failed attempts.

    Examples:

    \b
      b24recover passwd anna.ivanova   # at a terminal: asks for the current password, then the new one twice
      printf '%s\\n%s\\n' "$OLD" "$NEW" | b24recover passwd anna.ivanova --password-stdin
    """
    from ..services.admin import passwd as do_passwd

    if dry_run:
        from ..services.writeback import preview

        return show_dry_run([preview(service_ctx(ctx), login, "password")], as_json)
    if password_stdin and (password_env or current_password_env):
        raise B24Error("usage", "--password-stdin reads both passwords; do not combine it with --password-env "
                                "or --current-password-env")
    if password_stdin:
        secrets = SecretInput(stdin=True, as_json=as_json)
        current = secrets.line(0, "the current password")
        new = secrets.line(1, "the new password")
    sctx = service_ctx(ctx)
    if not password_stdin:
        if current_password_env:
            current = SecretInput(env=current_password_env).from_env("the current password")
        else:
            from ..services.admin import verify_current

            current = SecretInput(as_json=as_json).prompt("Current password")
            verify_current(sctx, login, current)  # before asking for the new one (counted when wrong)
        new = read_new_password(SecretInput(env=password_env, as_json=as_json), policy_check(sctx, login))
    result = do_passwd(sctx, login, current, new)
    if as_json:
        render.emit_json(result)
    else:
        upgraded = f" (the old {result['upgraded_from']} hash was replaced by bcrypt)" if result["upgraded_from"] else ""
        render.info(f"The password of {result['login']} was changed{upgraded}." + _notice_line(result["notice"]))


class _Bar:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self):
        self.progress = None
        self.task = None

    def __enter__(self):
        if render.is_tty(sys.stderr):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("resetting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.start()
        return self

    def __call__(self, completed: int, total: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("reset", total=total)
        self.progress.update(self.task, completed=completed)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def _summary_text(result: dict, out: str | None) -> None:
    render.line(f"{result['mode']}: {result['done']} done, {len(result['skipped'])} skipped, "
                f"{len(result['failed'])} failed (of {result['total']} rows; job {result['job']}"
                f"{', resumed' if result['resumed'] else ''}).")
    for item in result["skipped"]:
        render.line(f"  skipped {item['login']}: {item['reason']}")
    for item in result["failed"]:
        render.line(f"  failed  {item['login']}: {item['code']}: {item['reason']}")
    sent = result.get("notices", {})
    if sent.get("sent") or sent.get("failed"):
        render.line(f"  notices: {sent['sent']} sent, {sent['failed']} failed"
                   + (" (they stay in the outbox: b24recover outbox send)" if sent["failed"] else ""))
    if out and result["resumed"]:
        render.info(f"Resumed: in {out} the last line for a login is the password in force.")


@bulk_app.command("reset")
@handle_errors
def bulk_reset(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="FILE|-", help="Logins one per line, or a CSV with a login column; - for stdin."),
    mode: str = typer.Option(..., "--mode", help="control-string or temporary-password."),
    out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                      help="Where login,password lines go (temporary-password; created 0600)."),
    force: bool = typer.Option(False, "--force", help="Pass the control-string throttle (audited)."),
    no_notify: bool = typer.Option(False, "--no-notify", help="temporary-password: no password-changed notices."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why (kept in the audit trail)."),
    restart: bool = typer.Option(False, "--restart",
                                 help="Forget an earlier run of the same list and mode and reset everyone again."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=256,
                                          help="Hashing threads (default: one per CPU)."),
    batch: int = typer.Option(64, "--batch", min=1, max=10000, help="Accounts per transaction."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation on a terminal."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary unless something failed (the exit code tells)."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
):
    """Reset many accounts at once; re-running the same input resumes it without resetting twice.

    control-string: each account gets a control string by email (SMS when it has only a phone);
    blocked accounts are skipped; the throttle applies unless --force.
    temporary-password: a generated password per account, must_change_password set; the
    login,password lines go only into --out (0600). If a run is interrupted, run it again with the
    same input and --out: in that file the last line for a login is the password in force.

    The summary (--json: {"mode", "done", "skipped": [{"login", "reason"}], "failed":
    [{"login", "code", "reason"}], ...}) goes to stdout. Exit 0 when nothing failed, otherwise the
    exit code of the first failed row (3 unknown login, 4 blocked or no address, 5 malformed row,
    7 throttled, 9 not delivered). On a terminal it first asks for confirmation, naming the
    number of rows and the mode; --yes (or no terminal) skips the question.

    Examples:

    \b
      b24recover bulk reset examples/leavers.txt --mode temporary-password --out new-passwords.csv --yes
      b24recover bulk reset examples/leavers.txt --mode control-string --yes
    """
    from ..services.bulk import bulk_reset as do_bulk, check_options

    check_options(mode, out, force)
    sctx = service_ctx(ctx)
    if not yes and source != "-":
        from .prompts import confirm_bulk

        confirm_bulk(source, mode, out, as_json)
    if source == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
    else:
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise B24Error("invalid_input", f"cannot read {source}: {exc.strerror}") from None
    if dry_run:
        from ..services.bulk import Summary, read_logins
        from ..services.writeback import preview

        try:
            rows = read_logins(stream, Summary(mode=mode))
        finally:
            if source != "-":
                stream.close()
        kind = "password" if mode == "temporary-password" else "checkword"
        return show_dry_run([preview(sctx, r.login, kind, expired=True) for r in rows], as_json)
    try:
        with _Bar() as bar:
            result = do_bulk(sctx, stream, mode, out=out, force=force, notify=not no_notify, reason=reason,
                             restart=restart, workers=workers, chunk=batch, progress=bar)
    finally:
        if source != "-":
            stream.close()
    if as_json:
        render.emit_json(result)
    elif not quiet or result["failed"]:
        _summary_text(result, out)
    if result["failed"]:
        first = result["failed"][0]
        raise B24Error(first["code"], f"{len(result['failed'])} row(s) failed; the first: "
                                      f"{first['login']}: {first['reason']}", hint="See the summary above; "
                                      "fix them and run the same command again (done rows are not repeated).")
