"""The confusable skeleton of Unicode Technical Standard #39, section 4:

    skeleton(X) = NFD(the prototype of every character of NFD(X))

Two strings with the same skeleton look alike ("аnna" with a Cyrillic а and "anna"). The
prototypes are those of Unicode's confusables.txt, shipped beside this module in a compact form
(source;prototype as hex code points). No PyPI package offers the TR39 skeleton itself (see
docs/decisions.md); reading the 80 KB table costs about 10 ms, once per process, and only commands
that add or rename accounts need it.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

DATA_FILE = Path(__file__).with_name("confusables.txt")


@functools.lru_cache(maxsize=1)
def prototypes() -> dict[str, str]:
    """source character -> its prototype (one or more characters)."""
    table: dict[str, str] = {}
    for line in DATA_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        source, _, target = line.partition(";")
        table[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def skeleton(text: str) -> str:
    table = prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in decomposed))
