"""Reading secrets: stdin lines, a named environment variable, or a hidden prompt; never argv.
Typer-free (the prompt imports it when it is needed), so the fast path can use it too."""

from __future__ import annotations

import os
import sys

from ..errors import B24Error

MAX_SECRET_LINE = 4096


class SecretInput:
    """Secrets come from stdin lines, a named environment variable, or a hidden prompt; never argv."""

    def __init__(self, *, stdin: bool = False, env: str | None = None, as_json: bool = False):
        self.stdin = stdin
        self.env = env
        self.as_json = as_json
        self._lines: list[str] | None = None

    def _stdin_lines(self) -> list[str]:
        if self._lines is None:
            data = sys.stdin.buffer.read(MAX_SECRET_LINE * 4 + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
            if len(data) > MAX_SECRET_LINE * 4:
                raise B24Error("invalid_input", "standard input is too long for a secret")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise B24Error("invalid_input", "standard input is not valid UTF-8") from None
            self._lines = [line.removesuffix("\r") for line in text.split("\n")]
        return self._lines

    def line(self, index: int, what: str) -> str:
        lines = self._stdin_lines()
        if index >= len(lines) or (lines[index] == "" and index == len(lines) - 1):
            raise B24Error("input_required", f"{what} was expected on line {index + 1} of standard input")
        value = lines[index]
        if len(value) > MAX_SECRET_LINE:
            raise B24Error("invalid_input", f"{what} is too long")
        return value

    def from_env(self, what: str) -> str:
        from ..delivery import SECRET_ENV_NAMES

        SECRET_ENV_NAMES.add(self.env or "")  # so no program we start inherits it
        value = os.environ.get(self.env or "")
        if value is None:
            raise B24Error("input_required", f"the environment variable {self.env} holding {what} is not set")
        return value

    def can_prompt(self) -> bool:
        return not self.as_json and sys.stdin is not None and sys.stdin.isatty()

    def prompt(self, text: str) -> str:
        if not self.can_prompt():
            raise B24Error("input_required", f"{text} is needed and there is no terminal to ask on")
        import typer

        return typer.prompt(text, hide_input=True, default="", show_default=False)

    def prompt_new_password(self) -> str:
        first = self.prompt("New password")
        second = self.prompt("Repeat the new password")
        if first != second:
            raise B24Error("password_mismatch", "the two passwords differ")
        return first
