"""SMS delivery: a file per message in the outbox, a local program, or an HTTP gateway."""

from __future__ import annotations

import re
from pathlib import Path

from . import DeliveryError, make_private_dir, one_line, publish, unique_name, write_private_file

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


_MESSAGE_ID = re.compile(r"[!-~]{1,250}")  # printable ASCII, no space: safe as a header line and in env

MESSAGE_ID_ENV = "B24RECOVER_MESSAGE_ID"  # what the command transport's program gets the id in


def send_sms(settings, number: str, text: str, message_id: str | None = None) -> str:
    """Send one SMS. message_id (the outbox's stable id) goes with it so a receiver can tell a
    repeat after a crash from a new message: a header line in the file, an environment variable
    for a program, a JSON field for a gateway."""
    # The number becomes a file header line and a program argument: only E.164 gets that far.
    if not _E164.fullmatch(number):
        raise DeliveryError("the phone number is not in E.164 form (+<country><number>)")
    if message_id is not None:
        message_id = message_id.strip("<>")
        if not _MESSAGE_ID.fullmatch(message_id):
            raise DeliveryError("the message id is not printable ASCII")
    transport = settings.sms.transport
    if transport == "outbox":
        return _to_outbox(settings.outbox_dir / "sms", number, text, message_id)
    if transport == "command":
        return _to_command(settings, number, text, message_id)
    if transport == "http":
        return _to_http(settings.sms.http_url, number, text, settings.sms.http_timeout, message_id)
    raise DeliveryError(f"unknown SMS transport {transport!r}")


def _to_outbox(folder: Path, number: str, text: str, message_id: str | None) -> str:
    name = unique_name()
    # Header lines (To: always first, then Message-ID:), a blank line, the text: readers split
    # at the first blank line.
    head = f"To: {number}\n" + (f"Message-ID: <{message_id}>\n" if message_id else "")
    # The temporary name is hidden and not *.txt, so a reader of sms/*.txt never sees half a file.
    tmp, final = folder / f".{name}.tmp", folder / f"{name}.txt"
    try:
        make_private_dir(folder)
        write_private_file(tmp, f"{head}\n{text}\n".encode("utf-8"))
        publish(tmp, final)
    except OSError as exc:
        raise DeliveryError(f"cannot write to SMS outbox {folder}: {exc.strerror or exc}") from None
    return f"written to sms/{final.name}"


# What a program inherits from us: enough to run and to speak the right language, nothing else
# (B24RECOVER_SECRET, --password-env variables, SMTP and database passwords stay with us).
_BASE_ENV = ("PATH", "LANG", "TZ", "HOME")


def command_env(settings, message_id: str | None, source: dict | None = None) -> dict[str, str]:
    """The minimal environment of the SMS program: PATH, LANG, LC_*, TZ, HOME, the variables
    `[sms] command_env` names, and the message id."""
    import os

    source = os.environ if source is None else source
    named = set(_BASE_ENV) | set(settings.sms.command_env)
    env = {k: v for k, v in source.items() if k in named or k.startswith("LC_")}
    for secret in secret_env_names(settings):
        env.pop(secret, None)
    if message_id is not None:
        env[MESSAGE_ID_ENV] = message_id
    return env


def secret_env_names(settings) -> set[str]:
    """Variables that hold a secret and never reach a program, even when `command_env` names them."""
    from . import SECRET_ENV_NAMES

    names = {"B24RECOVER_SECRET", settings.mail.smtp_password_env, settings.portal.password_env}
    return {n for n in names | SECRET_ENV_NAMES if n}


def _to_command(settings, number: str, text: str, message_id: str | None) -> str:
    import subprocess

    command, timeout = settings.sms.command, settings.sms.http_timeout
    if not command:
        raise DeliveryError("[sms] command is empty")
    program = Path(command[0]).name
    try:
        done = subprocess.run(
            [*command, number], input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False,
            env=command_env(settings, message_id),
        )
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{program} did not finish within {timeout} s") from None
    except OSError as exc:  # not found, not executable
        raise DeliveryError(f"cannot run {program}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        last = _scrub(_last_line(done.stderr), text)
        raise DeliveryError(f"{program} failed ({how})" + (f": {last}" if last else ""))
    last = _scrub(_last_line(done.stdout), text)
    return f"accepted by {program}" + (f": {last}" if last else "")


def _last_line(output: bytes) -> str:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else ""


def _scrub(answer: str, text: str) -> str:
    """Hide anything secret-looking from the text that a gateway echoes back.

    The answer is stored in the outbox and the audit log, where no code or control string may
    appear (SPEC §5); codes and control strings are the text's words with digits or of 16+ characters.
    """
    for word in set(re.findall(r"\w{4,}", text)):
        if any(ch.isdigit() for ch in word) or len(word) >= 16:
            answer = answer.replace(word, "[redacted]")
    return answer


def _to_http(url: str, number: str, text: str, timeout: int, message_id: str | None) -> str:
    import json
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("[sms] http_url must be an http:// or https:// URL")
    where = parts.netloc.rpartition("@")[2]  # never echo user:password from the URL; the path may hold a key
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if parts.username is not None:  # urllib cannot use https://user:pass@host/ itself: send Basic auth
        url = parts._replace(netloc=where).geturl()
        headers["Authorization"] = _basic_auth(parts.username, parts.password or "")
    payload = {"to": number, "text": text} | ({"message_id": message_id} if message_id else {})
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.build_opener(_redirect_handler()).open(request, timeout=timeout) as response:
            return f"HTTP {response.status} {_scrub(one_line(response.read(4096), 120), text)}".rstrip()
    except OSError as exc:  # HTTPError, URLError and socket errors are all OSErrors
        raise DeliveryError(_http_failure(exc, where, timeout, text)) from None


def _basic_auth(user: str, password: str) -> str:
    import base64
    from urllib.parse import unquote

    return "Basic " + base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode("utf-8")).decode("ascii")


def _http_failure(exc: OSError, where: str, timeout: int, text: str) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):  # non-2xx answers, redirects included
        with exc:
            answer = _scrub(one_line(exc.read(4096), 120), text)
        return f"HTTP {exc.code} {answer or exc.reason}".rstrip()
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(reason, TimeoutError):
        return f"no answer from {where} within {timeout} s (timed out)"
    return f"cannot reach {where}: {one_line(getattr(reason, 'strerror', None) or str(reason))}"


def _redirect_handler():
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would turn a redirected POST into a GET without the message and report success.
        def redirect_request(self, *args, **kwargs):
            return None

    return NoRedirect()
