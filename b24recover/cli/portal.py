"""The bodies of `lookup` and `token request`: what a portal or a script calls most. They are
shared by the typer commands and by the fast path (cli/fast.py), so both answer identically."""

from __future__ import annotations

import sys

from . import render


def lookup_body(sctx, query: str, by: str, as_json: bool) -> None:
    from ..services.lookup import lookup

    matches = lookup(sctx, query, by)
    if as_json:
        render.emit_json({"matches": matches})
    else:
        render.table(render.ACCOUNT_COLUMNS, matches)


def request_body(sctx, identifier: str, as_json: bool) -> None:
    from ..services.tokens import request

    result = request(sctx, identifier)
    if as_json:
        render.emit_json(result)
    else:
        sys.stdout.write(result["message"] + "\n")
