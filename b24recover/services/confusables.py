"""The confusable skeleton of Unicode Technical Standard #39, section 4:

    skeleton(X) = NFD(the prototype of every character of NFD(X))

Two strings with the same skeleton look alike ("аnna" with a Cyrillic а and "anna"). The
prototypes are those of Unicode's confusables.txt, shipped beside this module in a compact form
(source;prototype as hex code points). No PyPI package offers the TR39 skeleton itself (see
docs/decisions.md); reading the 80 KB table costs about 10 ms, once per process (only commands
that add, rename or import accounts need it), and a skeleton then takes 1-2 µs (str.translate).
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

DATA_FILE = Path(__file__).with_name("confusables.txt")


@functools.lru_cache(maxsize=1)
def prototypes() -> dict[int, str]:
    """source code point -> its prototype (one or more characters), as str.translate takes it."""
    table: dict[int, str] = {}
    for line in DATA_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        source, _, target = line.partition(";")
        table[int(source, 16)] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def skeleton(text: str) -> str:
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(prototypes()))
