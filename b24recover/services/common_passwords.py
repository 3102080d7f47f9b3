"""Commonly used passwords: zxcvbn's "passwords" frequency list (30,000 entries from leaked
password corpora), shipped normalised in common_passwords.txt beside this module.

Importing zxcvbn and normalising its list cost ~90 ms on every command that sets a password,
so the normalised list is written once from the installed zxcvbn
(`python -m b24recover.services.common_passwords`) and a test checks that the file still equals
what zxcvbn gives; reading it takes a few milliseconds.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

LIST_FILE = Path(__file__).with_name("common_passwords.txt")


def normalise(password: str) -> str:
    """The form compared with the list: NFKC, case-folded, without surrounding spaces."""
    return unicodedata.normalize("NFKC", password).strip().casefold()


def from_zxcvbn() -> list[str]:
    """The list as zxcvbn has it, normalised, in zxcvbn's (frequency) order, without repeats."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    entries = FREQUENCY_LISTS["passwords"]
    if isinstance(entries, str):  # some zxcvbn releases keep each list as one comma-joined string
        entries = entries.split(",")
    return list(dict.fromkeys(normalise(e) for e in entries if e and normalise(e)))


@functools.cache
def common_passwords() -> frozenset[str]:
    return frozenset(LIST_FILE.read_text(encoding="utf-8").splitlines())


def is_common(password: str) -> bool:
    return normalise(password) in common_passwords()


def count() -> int:
    return len(common_passwords())


if __name__ == "__main__":
    LIST_FILE.write_text("\n".join(from_zxcvbn()) + "\n", encoding="utf-8")
    print(f"wrote {count()} entries to {LIST_FILE}")
