"""`user import FILE|-`: bulk import of accounts (csv, jsonl, Bitrix b_user export)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from . import render
from .runtime import handle_errors, service_ctx

SHOWN_BAD = 50


@handle_errors
def import_users(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE|-", help="The file to import; - reads standard input."),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="csv|jsonl|bitrix",
                                      help="Default: .jsonl files are jsonl, a header with LOGIN and "
                                           "EXTERNAL_AUTH_ID is a Bitrix b_user export, anything else csv."),
    on_conflict: str = typer.Option("fail", "--on-conflict", metavar="fail|skip|update",
                                    help="A row whose login, email, phone or social identity is taken: "
                                         "fail (report it as bad), skip (count it as skipped) or update "
                                         "(update the profile of the account with that login: name, last "
                                         "name, email, phone, lang)."),
    update_passwords: bool = typer.Option(False, "--update-passwords",
                                          help="With --on-conflict update: also replace password hashes "
                                               "(and attach new social identities)."),
    update_state: bool = typer.Option(False, "--update-state",
                                      help="With --on-conflict update: also apply blocked/active."),
    encoding: Optional[str] = typer.Option(None, "--encoding", metavar="utf-8|windows-1251",
                                           help="The file's character set (default utf-8; windows-1251 for "
                                                "an old portal's export)."),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="A,B,...",
                                          help="The column names of a file without a header row (e.g. "
                                               "SELECT ... INTO OUTFILE); the first line is then data."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row against the store; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Import accounts in bulk, streaming, in short transactions (about 0.25 s each).

    csv columns: login,email,phone,name,last_name,lang,password_hash,social,blocked (social:
    PROVIDER:SUBJECT entries separated by ';'; blocked: 1/0, true/false or Y/N). jsonl: one
    object per line with the same keys. bitrix: a b_user export (comma, semicolon or TAB
    separated; see docs/bitrix.md for the export commands).
    Password hashes only (Bitrix $6$, salt+md5, md5): never clear-text passwords. A row without
    a hash or social identity gets no password and recovers through a control string.
    Bad rows are reported by line number; the good rows are kept; exit 5 if any row was bad.

    Examples: b24recover user import users.csv; b24recover user import b_user.csv --dry-run;
    gunzip -c users.jsonl.gz | b24recover user import - --format jsonl --on-conflict skip
    """
    from ..errors import B24Error
    from ..services.importer import CONFLICT_MODES, FORMATS, run_import

    if fmt is not None and fmt not in FORMATS:
        raise B24Error("usage", f"--format must be one of {', '.join(FORMATS)}")
    if on_conflict not in CONFLICT_MODES:
        raise B24Error("usage", f"--on-conflict must be one of {', '.join(CONFLICT_MODES)}")
    if (update_passwords or update_state) and on_conflict != "update":
        raise B24Error("usage", "--update-passwords and --update-state go with --on-conflict update")
    column_names = [c.strip() for c in columns.split(",")] if columns is not None else None
    sctx = service_ctx(ctx)
    stream, size = _open(file)
    try:
        with _progress(size) as progress:
            result = run_import(sctx, stream, name=file, fmt=fmt, on_conflict=on_conflict,
                                dry_run=dry_run, progress=progress, update_passwords=update_passwords,
                                update_state=update_state, encoding=encoding, columns=column_names)
    finally:
        if stream is not _stdin():
            stream.close()
    if as_json:
        render.emit_json(result.to_json())
    else:
        _summary(result, file)
    if result.bad_count:
        raise B24Error("invalid_input", f"{result.bad_count} row(s) were not imported (listed by line); "
                       "the other rows were " + ("checked" if dry_run else "kept"),
                       hint="Correct the bad rows and import the file again with --on-conflict skip.")


def _stdin():
    return getattr(sys.stdin, "buffer", sys.stdin)


def _open(file: str):
    """The input as a binary stream, and its size when known (for the progress bar)."""
    from ..errors import B24Error

    if file == "-":
        return _stdin(), None
    try:
        stream = open(file, "rb")
    except OSError as exc:
        raise B24Error("invalid_input", f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        import os

        size = os.fstat(stream.fileno()).st_size or None
    except OSError:
        size = None
    return stream, size


class _progress:
    """A rich progress bar by bytes read, on stderr, only when stderr is a terminal."""

    def __init__(self, total: int | None):
        self.total = total
        self.bar = None

    def __enter__(self):
        if not render.is_tty(sys.stderr):
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("import", total=self.total)
        return lambda done: self.bar.update(task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _summary(result, file: str) -> None:
    source = "standard input" if file == "-" else file
    head = "Dry run, nothing was written" if result.dry_run else "Imported"
    render.info(f"{head}: {source} ({result.format}): read {result.read}, added {result.added}, "
                f"updated {result.updated}, unchanged {result.unchanged}, skipped {result.skipped}, "
                f"bad {result.bad_count}.")
    for bad in result.bad[:SHOWN_BAD]:
        who = f" ({bad['login']})" if bad["login"] else ""
        render.info(f"  line {bad['line']}{who}: {bad['reason']}")
    if result.bad_count > SHOWN_BAD:
        render.info(f"  ... and {result.bad_count - SHOWN_BAD} more bad rows (--json lists them).")
