"""The QR code as drawn on a terminal decodes to the link, on a dark and on a light theme, and is
not drawn (with a reason) on a terminal too narrow for it."""

from __future__ import annotations

import re

import pytest

from conftest import add_user
from ux_pty import pty_run

zxingcpp = pytest.importorskip("zxingcpp", reason="the QR decoder (zxing-cpp, test extra) is not installed")

THEMES = {"dark": {"fg": 230, "bg": 20}, "light": {"fg": 20, "bg": 245}}
SGR = re.compile(r"\x1b\[([0-9;]*)m")
SCALE, MARGIN = 4, 6


def _colour(code: str, theme: dict, kind: str):
    value = int(code)
    if value == 0:
        return None
    return {30: 0, 40: 0, 97: 255, 107: 255, 37: 200, 47: 200}.get(value, theme[kind])


def render_terminal(text: str, theme: dict) -> tuple[bytes, int, int]:
    """What a terminal with this theme shows, as a grayscale image: each "▀" cell is its
    foreground on top and background below; default colours are the theme's; the window
    around the text is the theme's background."""
    grid = []
    for line in text.splitlines():
        if "▀" not in line and "█" not in line and "▄" not in line:
            continue
        fg = bg = None
        top, bottom = [], []
        pos = 0
        for m in SGR.finditer(line + "\x1b[m"):
            for ch in line[pos:m.start()]:
                f = theme["fg"] if fg is None else fg
                b = theme["bg"] if bg is None else bg
                if ch == "▀":
                    top.append(f), bottom.append(b)
                elif ch == "▄":
                    top.append(b), bottom.append(f)
                elif ch == "█":
                    top.append(f), bottom.append(f)
                else:
                    top.append(b), bottom.append(b)
            for code in (m.group(1) or "0").split(";"):
                if code in ("0", ""):
                    fg = bg = None
                elif 30 <= int(code) <= 37 or 90 <= int(code) <= 97 or code == "39":
                    fg = None if code == "39" else _colour(code, theme, "fg")
                elif 40 <= int(code) <= 47 or 100 <= int(code) <= 107 or code == "49":
                    bg = None if code == "49" else _colour(code, theme, "bg")
            pos = m.end()
        grid += [top, bottom]
    width = max(len(r) for r in grid) + 2 * MARGIN
    rows = [[theme["bg"]] * width for _ in range(MARGIN)]
    rows += [[theme["bg"]] * MARGIN + r + [theme["bg"]] * (width - MARGIN - len(r)) for r in grid]
    rows += [[theme["bg"]] * width for _ in range(MARGIN)]
    pixels = bytearray()
    for r in rows:
        line = bytes(v for v in r for _ in range(SCALE))
        pixels += line * SCALE
    return bytes(pixels), width * SCALE, len(rows) * SCALE


def decode(text: str, theme: dict) -> list[str]:
    pixels, w, h = render_terminal(text, theme)
    image = memoryview(pixels).cast("B", (h, w))
    return [b.text for b in zxingcpp.read_barcodes(image, try_invert=False)]


@pytest.mark.parametrize("theme", list(THEMES))
def test_the_drawn_qr_code_decodes_on_both_themes(store, db_path, config_path, tmp_path, theme):
    add_user(store, "anna", "--email", "anna@example.com")
    base = ["--db", str(db_path), "--config", str(config_path)]
    code, out = pty_run([*base, "token", "issue", "anna", "--via", "qr"], cwd=tmp_path, cols=100)
    assert code == 0, out
    link = re.search(r"https://\S+USER_LOGIN=anna", out).group(0)
    assert decode(out, THEMES[theme]) == [link]


def test_the_old_drawing_fails_on_a_light_theme():
    """The simulation tells the difference: segno's default terminal output (no explicit
    background) does not decode on a light theme, which is why the tool draws its own."""
    import io
    import segno

    buffer = io.StringIO()
    segno.make("https://portal.example.com/x", error="m").terminal(out=buffer, compact=True)
    assert decode(buffer.getvalue(), THEMES["dark"]) == ["https://portal.example.com/x"]
    assert decode(buffer.getvalue(), THEMES["light"]) == []


def test_too_narrow_a_terminal_gets_the_link_and_the_reason(store, db_path, config_path, tmp_path):
    add_user(store, "anna", "--email", "anna@example.com")
    base = ["--db", str(db_path), "--config", str(config_path)]
    code, out = pty_run([*base, "token", "issue", "anna", "--via", "qr"], cwd=tmp_path, cols=40)
    assert code == 0, out
    assert "▀" not in out and "40 columns wide" in out and "USER_CHECKWORD=" in out
