"""The recovery link as a QR code in the terminal, for a person at the desk with a phone.

Drawn with half blocks (two modules per character cell) in explicit black and bright white, with
the 4-module quiet zone the standard asks for, so it reads the same on light and dark terminal
themes. It is never wrapped: on a terminal too narrow for it nothing is drawn (the caller prints
the link and says why)."""

from __future__ import annotations

import sys

QUIET_ZONE = 4
_FG = {True: "30", False: "97"}  # dark module: black; light module: bright white
_BG = {True: "40", False: "107"}


def qr_lines(link: str) -> list[str]:
    import segno

    qr = segno.make(link, error="m")
    rows = [[bool(m) for m in row] for row in qr.matrix_iter(scale=1, border=QUIET_ZONE)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2]):
        out, state = [], None
        for t, b in zip(top, bottom):
            if (t, b) != state:
                out.append(f"\033[{_FG[t]};{_BG[b]}m")
                state = (t, b)
            out.append("▀")
        out.append("\033[0m")
        lines.append("".join(out))
    return lines


def width(link: str) -> int:
    import segno

    return segno.make(link, error="m").symbol_size(scale=1, border=QUIET_ZONE)[0]


def draw(link: str, columns: int) -> bool:
    """Draw on stdout when it fits in `columns`; False (nothing drawn) when it does not."""
    if width(link) > columns:
        return False
    sys.stdout.write("\n".join(qr_lines(link)) + "\n")
    sys.stdout.flush()
    return True
