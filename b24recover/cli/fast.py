"""Answer `lookup`, `token request` and `redeem` without importing typer.

These are the calls a portal's forms and operators' scripts make all the time; typer's import
alone is ~90 ms of a ~160 ms start. Only their plainest forms are taken here: global options
`--db/--config/--actor VALUE`, then `lookup QUERY [--by WHERE] [--json]`,
`token request IDENTIFIER [--json]` or
`redeem LOGIN --control-string-stdin --password-stdin [--json]`. Anything else (--help,
`--opt=value`, unknown options, other commands) returns None and typer parses as usual.
"""

from __future__ import annotations

import os

from .guard import Globals, check_arguments, make_ctx, run_guarded, with_writebacks
from .portal import LOOKUP_LIMIT, lookup_body, redeem_body, request_body

_GLOBALS = {"--db": "db", "--config": "config", "--actor": "actor"}


def _split(args: list[str]):
    """(Globals, the rest) or None when a global option is not in its plain form."""
    g = Globals(db=os.environ.get("B24RECOVER_DB") or "b24recover.db",
                config=os.environ.get("B24RECOVER_CONFIG") or None, actor=None, detach=True)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in _GLOBALS or i + 1 >= len(args):
            return None
        setattr(g, _GLOBALS[args[i]], args[i + 1])
        i += 2
    return g, args[i:]


def _options(rest: list[str], with_value: tuple[str, ...]):
    """(the one positional argument, {option: value}) or None for anything unusual."""
    positional, options, i = [], {}, 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("--json", "--no-headers"):
            options[arg] = True
        elif arg in with_value and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            options[arg] = rest[i + 1]
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
        i += 1
    return (positional[0], options) if len(positional) == 1 else None


def try_fast(args: list[str]) -> int | None:
    """The exit code, or None when typer must handle this command line."""
    split = _split(args)
    if split is None:
        return None
    g, rest = split
    if rest[:1] == ["lookup"]:
        parsed = _options(rest[1:], ("--by", "--limit", "--format", "-o"))
        if parsed is None:
            return None
        (query, opts), as_json = parsed, bool(parsed[1].get("--json"))
        limit = opts.get("--limit", str(LOOKUP_LIMIT))
        if not limit.isdigit():
            return None  # typer says what is wrong with it
        body = lambda: (check_arguments(rest),  # noqa: E731
                        lookup_body(make_ctx(g), query, opts.get("--by", "auto"), as_json,
                                    int(limit), opts.get("--format", opts.get("-o")), not opts.get("--no-headers")))
    elif rest[:1] == ["redeem"] and "--control-string-stdin" in rest and "--password-stdin" in rest:
        # The portal's "set a new password" form: both secrets on stdin, nothing to prompt for.
        parsed = _options([a for a in rest[1:] if a not in ("--control-string-stdin", "--password-stdin")], ())
        if parsed is None:
            return None
        (login, opts), as_json = parsed, bool(parsed[1].get("--json"))
        body = with_writebacks(lambda: (check_arguments(rest),  # noqa: E731
                                        redeem_body(lambda: make_ctx(g), login, control_string_stdin=True,
                                                    password_stdin=True, password_env=None, as_json=as_json)))
    elif rest[:2] == ["token", "request"]:
        parsed = _options(rest[2:], ())
        if parsed is None:
            return None
        (identifier, opts), as_json = parsed, bool(parsed[1].get("--json"))
        body = with_writebacks(lambda: request_body(make_ctx(g), identifier, as_json))
    else:
        return None
    return run_guarded(body, as_json=as_json, db=g.db)
