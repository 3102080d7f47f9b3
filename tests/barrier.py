"""Release racing child processes together: each child creates its `ready` file once it is set
up and waits for `go`; the parent creates `go` when every child is ready."""

from __future__ import annotations

import time
from pathlib import Path


def release_together(children: list[tuple], go: Path) -> None:
    """children: (Popen, ..., ready path) tuples, the ready path last."""
    deadline = time.monotonic() + 120  # a safety net against hanging, not a timing assertion
    while not all(c[-1].exists() for c in children):
        assert time.monotonic() < deadline and all(c[0].poll() is None for c in children), "a child never got ready"
        time.sleep(0.001)
    go.touch()
