"""Time as whole UTC seconds, injectable so tests can pin boundaries exactly."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class FixedClock:
    """A clock for tests: stands still until advanced."""

    def __init__(self, now: int = 1_790_000_000):
        self._now = int(now)

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += int(seconds)


def iso(ts: int | None) -> str | None:
    """ISO 8601 UTC with a trailing Z, as the JSON contract requires."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """'90s', '10m', '24h', '30d' (also '1h30m') -> seconds. Raises ValueError."""
    s = str(text).strip().lower()
    if not s:
        raise ValueError("empty duration")
    if s.isdigit():
        return int(s)
    total, num = 0, ""
    for ch in s:
        if ch.isdigit():
            num += ch
        elif ch in _UNITS and num:
            total += int(num) * _UNITS[ch]
            num = ""
        else:
            raise ValueError(f"bad duration {text!r}: write it like 90s, 10m, 24h or 30d")
    if num:
        raise ValueError(f"bad duration {text!r}: a number needs a unit (s, m, h, d)")
    return total


def parse_when(text: str, now: int) -> int:
    """A point in time: a duration back from now ('2h'), a date ('2026-11-01') or ISO time."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    s = text.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"bad time {text!r}: write 2h, 30d, 2026-11-01 or 2026-11-01T10:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())
