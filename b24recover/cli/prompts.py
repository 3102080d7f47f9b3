"""Questions asked at a terminal: a confirmation before bulk work, and new passwords asked
again (up to 3 times) after a mismatch or a policy refusal. Typer-free, like secret_input."""

from __future__ import annotations

import sys

from ..errors import B24Error
from . import render

TRIES = 3


def at_terminal() -> bool:
    return render.is_tty(sys.stdin) and render.is_tty(sys.stderr)


def ask_line(text: str) -> str:
    """One visible answer; Ctrl-D is "no input" (exit 5), Ctrl-C propagates (exit 130)."""
    sys.stderr.write(text)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        sys.stderr.write("\n")
        raise B24Error("input_required", "no input (end of input at the prompt)",
                       hint="Answer the question, or run the command with --yes.")
    return answer.strip()


def _rows_in(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError:
        return None  # the command itself reports an unreadable file
    first = lines[0].lower().replace(b";", b",").split(b",")[0].strip(b' "') if lines else b""
    if first == b"login":  # a CSV's header line
        lines = lines[1:]
    return len(lines)


def confirm_bulk(source: str, mode: str, out: str | None, as_json: bool) -> None:
    """On a terminal: "Reset N account(s) ...? [y/N]"; anything but yes stops (exit 130, nothing done)."""
    if as_json or not at_terminal():
        return
    rows = _rows_in(source)
    if rows is None:
        return
    what = ("send each a control string" if mode == "control-string"
            else f"set a temporary password for each (written to {out})")
    answer = ask_line(f"Reset {rows} account(s) from {source}: {what}? [y/N] ")
    if answer.lower() not in ("y", "yes"):
        render.info("Nothing was reset.")
        raise KeyboardInterrupt
