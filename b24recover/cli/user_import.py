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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary unless some rows were bad (the exit code tells)."),
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

    Examples:

    \b
      b24recover user import examples/users.csv --on-conflict skip
      b24recover user import examples/b_user.csv --format bitrix --dry-run
      gzip -c examples/users.csv | gunzip -c | b24recover user import - --on-conflict skip
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
    raw, size = _open(file)
    stream = _Counting(raw)
    try:
        with _progress(size, stream) as progress:
            result = run_import(sctx, stream, name=file, fmt=fmt, on_conflict=on_conflict,
                                dry_run=dry_run, progress=progress, update_passwords=update_passwords,
                                update_state=update_state, encoding=encoding, columns=column_names,
                                on_bad=progress.bad if progress else None)
    except KeyboardInterrupt:
        again = f"b24recover user import {_quoted(file)}" if file != "-" else "the same import"
        render.info(f"Interrupted after reading {stream.lines:,} line(s). Rows are written in short "
                    f"transactions (about half a second each): what was committed stays. To resume, run {again} "
                    "--on-conflict skip (rows already imported are skipped).")
        raise
    finally:
        if raw is not _stdin():
            raw.close()
    if as_json:
        render.emit_json(result.to_json())
    elif not quiet or result.bad_count:
        _summary(result, file)
    if result.bad_count:
        raise B24Error("invalid_input", f"{result.bad_count} row(s) were not imported (listed by line); "
                       "the other rows were " + ("checked" if dry_run else "kept"), hint=_bad_hint(result, dry_run))


def _bad_hint(result, dry_run: bool) -> str:
    """What to do depends on why rows were bad: taken identifiers, or rows that could not be read."""
    taken = all(bad.get("code") == "conflict" for bad in result.bad)
    if taken:
        return ("Their login, email, phone or social identity belongs to another account: --on-conflict skip "
                "leaves them out, --on-conflict update updates the accounts with those logins.")
    if dry_run:
        return "Correct the lines listed above, then import the file."
    return ("Correct the lines listed above and import the file again with --on-conflict skip, so the rows "
            "kept now are not reported as taken.")


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


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(path)


class _Counting:
    """The input, counting the lines read so far (for the progress line and after Ctrl-C)."""

    def __init__(self, stream):
        self._stream, self.lines = stream, 0

    def readline(self, limit: int = -1) -> bytes:
        line = self._stream.readline(limit)
        if line.endswith(b"\n"):
            self.lines += 1
        return line

    def __getattr__(self, name):  # fileno, read, ... as the stream has them
        return getattr(self._stream, name)


class _progress:
    """A progress line on stderr, only when stderr is a terminal: rows read, and a bar by bytes."""

    def __init__(self, total: int | None, counter: _Counting):
        self.total, self.counter = total, counter
        self.bar = None

    def __enter__(self):
        if not render.is_tty(sys.stderr):
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("importing"), BarColumn(), TextColumn("{task.fields[rows]} lines read"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("import", total=self.total, rows="0")
        return _Updates(self.bar, task, self.counter)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


class _Updates:
    """What the import calls while it runs: after each batch, and for each bad row (shown above
    the bar as it is found, the first SHOWN_BAD of them; the summary repeats them)."""

    def __init__(self, bar, task, counter: _Counting):
        self.bar, self.task, self.counter, self.shown = bar, task, counter, 0

    def __call__(self, done: int) -> None:
        self.bar.update(self.task, completed=done, rows=f"{self.counter.lines:,}")

    def bad(self, row: dict) -> None:
        if self.shown < SHOWN_BAD:
            self.shown += 1
            who = f" ({row['login']})" if row["login"] else ""
            self.bar.console.print(render.safe(f"bad row: line {row['line']}{who}: {row['reason']}"),
                                   markup=False, highlight=False)


def _summary(result, file: str) -> None:
    source = "standard input" if file == "-" else file
    if result.dry_run:
        head = "Dry run, nothing was written"
    elif result.added or result.updated:
        head = "Imported"
    else:
        head = "Nothing imported"
    render.info(f"{head}: {source} ({result.format}): read {result.read}, added {result.added}, "
                f"updated {result.updated}, unchanged {result.unchanged}, skipped {result.skipped}, "
                f"bad {result.bad_count}.")
    for bad in result.bad[:SHOWN_BAD]:
        who = f" ({bad['login']})" if bad["login"] else ""
        render.info(f"  line {bad['line']}{who}: {bad['reason']}")
    if result.bad_count > SHOWN_BAD:
        render.info(f"  ... and {result.bad_count - SHOWN_BAD} more bad rows (--json lists them).")
