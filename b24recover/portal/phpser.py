"""A safe reader of PHP's serialize() format, for b_group.SECURITY_POLICY.

Only plain data is accepted: arrays, strings (their length is in bytes, as PHP writes it),
integers, floats, booleans and null. Objects, custom-serialized classes, enums and references
are refused: nothing here ever builds anything but dicts, lists of keys and scalars, so a
hostile value cannot run code or grow without bound (depth and size are limited too).
"""

from __future__ import annotations

MAX_DEPTH = 32
MAX_BYTES = 1 << 20


class PhpSerializeError(ValueError):
    """The value is not PHP-serialized plain data."""


def loads(data: bytes | str, charset: str = "utf-8"):
    """The value serialized in `data`; PHP arrays become dicts (keys int or str, in order)."""
    raw = data.encode(charset) if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_BYTES:
        raise PhpSerializeError(f"longer than {MAX_BYTES} bytes")
    reader = _Reader(raw, charset)
    value = reader.value(0)
    if reader.pos != len(raw):
        raise PhpSerializeError(f"unexpected data after the value at byte {reader.pos}")
    return value


class _Reader:
    def __init__(self, raw: bytes, charset: str):
        self.raw, self.pos, self.charset = raw, 0, charset

    def fail(self, what: str):
        raise PhpSerializeError(f"{what} at byte {self.pos}")

    def expect(self, token: bytes) -> None:
        if self.raw[self.pos:self.pos + len(token)] != token:
            self.fail(f"expected {token.decode()!r}")
        self.pos += len(token)

    def until(self, stop: bytes) -> bytes:
        end = self.raw.find(stop, self.pos)
        if end < 0:
            self.fail(f"missing {stop.decode()!r}")
        text, self.pos = self.raw[self.pos:end], end + len(stop)
        return text

    def integer(self, text: bytes) -> int:
        body = text[1:] if text[:1] in (b"-", b"+") else text
        if not body or not body.isdigit() or len(body) > 20:
            self.fail(f"bad integer {text[:24]!r}")
        return int(text)

    def value(self, depth: int):
        if depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH}")
        kind = self.raw[self.pos:self.pos + 2]
        if kind == b"N;":
            self.pos += 2
            return None
        if kind not in (b"b:", b"i:", b"d:", b"s:", b"a:"):
            if kind[:1] in (b"O", b"C", b"E", b"r", b"R"):
                self.fail("objects, enums and references are refused")
            self.fail(f"unknown type {kind[:1]!r}")
        self.pos += 2
        if kind == b"b:":
            text = self.until(b";")
            if text not in (b"0", b"1"):
                self.fail("bad boolean")
            return text == b"1"
        if kind == b"i:":
            return self.integer(self.until(b";"))
        if kind == b"d:":
            text = self.until(b";")
            try:
                return float({b"INF": b"inf", b"-INF": b"-inf", b"NAN": b"nan"}.get(text, text))
            except ValueError:
                self.fail(f"bad float {text[:24]!r}")
        if kind == b"s:":
            size = self.integer(self.until(b":"))
            if size < 0 or self.pos + size + 2 > len(self.raw):
                self.fail("string length past the end")
            self.expect(b'"')
            body = self.raw[self.pos:self.pos + size]
            self.pos += size
            self.expect(b'";')
            try:
                return body.decode(self.charset)
            except UnicodeDecodeError:
                self.fail(f"string not in {self.charset}")
        count = self.integer(self.until(b":"))
        if count < 0 or count > len(self.raw):
            self.fail("bad array size")
        self.expect(b"{")
        out: dict = {}
        for _ in range(count):
            key = self.value(depth + 1)
            if not isinstance(key, (int, str)) or isinstance(key, bool):
                self.fail("array keys must be integers or strings")
            out[key] = self.value(depth + 1)
        self.expect(b"}")
        return out
