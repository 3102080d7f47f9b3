"""Output: JSON for scripts, rich tables on a terminal, plain lines when piped.

stdout carries data, stderr carries messages. Styling may change when piped; content never does.
"""

from __future__ import annotations

import json
import sys

from ..errors import B24Error


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A message for the person at the terminal (stderr)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def error(err: B24Error, as_json: bool) -> None:
    if as_json:
        sys.stderr.write(json.dumps(err.to_json(), ensure_ascii=False) + "\n")
    else:
        line = f"error: {err.message}"
        if err.hint:
            line += f"\nhint: {err.hint}"
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def table(columns: list[tuple[str, str]], rows: list[dict], title: str | None = None) -> None:
    """columns: (key, heading). A rich table on a terminal, tab-separated lines otherwise."""
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for _, heading in columns:
            t.add_column(heading, overflow="fold")
        for row in rows:
            t.add_row(*(_cell(row.get(key)) for key, _ in columns))
        Console().print(t)
        return
    sys.stdout.write("\t".join(h for _, h in columns) + "\n")
    for row in rows:
        sys.stdout.write("\t".join(_cell(row.get(key)).replace("\t", " ") for key, _ in columns) + "\n")


def fields(pairs: list[tuple[str, object]], title: str | None = None) -> None:
    """Key/value lines, aligned."""
    if title:
        sys.stdout.write(title + "\n")
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"  {key.ljust(width)}  {_cell(value)}\n")


def account(acc: dict) -> None:
    fields([
        ("login", acc["login"]),
        ("name", " ".join(p for p in (acc.get("name"), acc.get("last_name")) if p) or None),
        ("email", acc["email"]),
        ("phone", acc["phone"]),
        ("language", acc["lang"]),
        ("state", acc["state"]),
        ("password", "set" if acc["has_password"] else "none"),
        ("social", acc["social"]),
        ("pending", acc["pending"]),
        ("must change", acc["must_change_password"]),
        *([("external", acc["external"])] if acc.get("external") else []),
        *([("portal ID", acc["portal_id"])] if acc.get("portal_id") is not None else []),
    ])


ACCOUNT_COLUMNS = [("login", "Login"), ("name", "Name"), ("last_name", "Last name"), ("email", "Email"),
                   ("phone", "Phone"), ("state", "State"), ("has_password", "Password"), ("social", "Social"),
                   ("external", "External")]
