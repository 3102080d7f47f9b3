"""Reading secrets: stdin lines, a named environment variable, or a hidden prompt; never argv.
Typer-free (the prompt imports it when it is needed), so the fast path can use it too."""

from __future__ import annotations

import os
import sys

from ..errors import B24Error

MAX_SECRET_LINE = 4096
TRIES = 3  # a new password is asked again after a mismatch or a policy refusal, up to this often


def _hint(what: str) -> str:
    """Name only the options that can give this secret."""
    what = what.lower()
    if "control string" in what:
        return ("Give the control string or code on standard input with --control-string-stdin "
                "(line 1; the new password on line 2 with --password-stdin).")
    if "password to check" in what or what == "the password":
        return "Give the password on standard input: printf '%s\\n' \"$PW\" | b24recover policy check"
    if "current password" in what:
        return ("Give both passwords on standard input with --password-stdin (current on line 1, new on line 2), "
                "or name variables with --current-password-env VAR and --password-env VAR.")
    return "Give the password on standard input (--password-stdin) or name an environment variable (--password-env VAR)."


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
            raise B24Error("input_required", f"{what} was expected on line {index + 1} of standard input",
                           hint=_hint(what))
        value = lines[index]
        if len(value) > MAX_SECRET_LINE:
            raise B24Error("invalid_input", f"{what} is too long")
        return value

    def from_env(self, what: str) -> str:
        from ..delivery import SECRET_ENV_NAMES

        SECRET_ENV_NAMES.add(self.env or "")  # so no program we start inherits it
        value = os.environ.get(self.env or "")
        if value is None:
            raise B24Error("input_required", f"the environment variable {self.env} holding {what} is not set",
                           hint=f"Export {self.env} before running the command, or give {what} on standard input.")
        return value

    def can_prompt(self) -> bool:
        return not self.as_json and sys.stdin is not None and sys.stdin.isatty()

    def prompt(self, text: str) -> str:
        if not self.can_prompt():
            if self.as_json and sys.stdin is not None and sys.stdin.isatty():
                raise B24Error("input_required", f"{text} is needed and --json never prompts",
                               hint="Give it on standard input or through --password-env VAR, or run without --json.")
            raise B24Error("input_required", f"{text} is needed and there is no terminal to ask on",
                           hint=_hint(text))
        import getpass

        try:
            return getpass.getpass(f"{text}: ")
        except EOFError:  # Ctrl-D: nothing was typed
            sys.stderr.write("\n")
            raise B24Error("input_required", f"no input: {text} was not given (end of input at the prompt)",
                           hint="Type it at the prompt, or give it on standard input.") from None

    def prompt_new_password(self, check=None) -> str:
        """Ask twice; after a policy refusal (`check` raises password_policy, before the
        confirmation) or a mismatch, ask again, up to TRIES times in all."""
        from . import render

        for attempt in range(1, TRIES + 1):
            first = self.prompt("New password")
            last = attempt == TRIES
            if check is not None:
                try:
                    check(first)
                except B24Error as exc:
                    if exc.code != "password_policy" or last:
                        raise
                    render.info(f"{exc.message}. Try again ({TRIES - attempt} more).")
                    continue
            second = self.prompt("Repeat the new password")
            if first == second:
                return first
            if last:
                raise B24Error("password_mismatch", "the two passwords differ")
            render.info(f"The two passwords differ. Try again ({TRIES - attempt} more).")
        raise AssertionError("unreachable")
