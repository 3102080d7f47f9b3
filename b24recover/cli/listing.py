"""What every listing shares: --limit (0: all), --format table|tsv|csv|json, --no-headers, and
the "more" flag or note when the limit cut the result. Typer-free, so the fast path uses it too."""

from __future__ import annotations

from ..errors import B24Error
from . import render


class Cut:
    """Iterate at most `limit` rows (0: all); afterwards `more` says whether another one existed."""

    def __init__(self, rows, limit: int):
        self.rows, self.limit, self.more, self.count = iter(rows), limit, False, 0

    def __iter__(self):
        for row in self.rows:
            if self.limit and self.count >= self.limit:
                self.more = True
                return
            self.count += 1
            yield row


def check(limit: int | None, fmt: str | None) -> None:
    if limit is not None and limit < 0:
        raise B24Error("usage", "--limit must be 0 (all) or more")
    if fmt is not None and fmt not in render.FORMATS:
        raise B24Error("usage", f"--format must be one of {', '.join(render.FORMATS)}")


def emit(key: str, columns, rows, *, limit: int, fmt: str | None, as_json: bool, headers: bool = True,
         what: str = "rows", remaining=None) -> None:
    """Print a listing; `remaining(shown)` counts what the limit cut (for the note), if cheap."""
    check(limit, fmt)
    cut = Cut(rows, limit)
    if as_json or fmt == "json":
        body = {key: list(cut)}
        if cut.more:
            body["more"] = True
        render.emit_json(body)
        return
    render.table(columns, cut, fmt=fmt, headers=headers, page=True)
    if cut.more:
        render.more_note(cut.count, remaining(cut.count) if remaining else None, what)
