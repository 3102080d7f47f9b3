"""Commonly used passwords: zxcvbn's "passwords" frequency list (30,000 entries, from leaked
password corpora), loaded on first use and kept as a frozenset.

zxcvbn is a heavy import (it builds its ranked dictionaries at import time, ~40 ms), so it is
imported only when a password is actually checked.
"""

from __future__ import annotations

import functools
import unicodedata


def normalise(password: str) -> str:
    """The form compared with the list: NFKC, case-folded, without surrounding spaces."""
    return unicodedata.normalize("NFKC", password).strip().casefold()


@functools.cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    entries = FREQUENCY_LISTS["passwords"]
    if isinstance(entries, str):  # some zxcvbn releases keep each list as one comma-joined string
        entries = entries.split(",")
    return frozenset(normalise(e) for e in entries if e)


def is_common(password: str) -> bool:
    return normalise(password) in common_passwords()


def count() -> int:
    return len(common_passwords())
