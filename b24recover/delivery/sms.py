"""SMS delivery: a file per message in the outbox, a local program, or an HTTP gateway."""

from __future__ import annotations

import re
from pathlib import Path

from . import DeliveryError, make_private_dir, one_line, publish, unique_name, write_private_file

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def send_sms(settings, number: str, text: str) -> str:
    # The number becomes a file header line and a program argument: only E.164 gets that far.
    if not _E164.fullmatch(number):
        raise DeliveryError("the phone number is not in E.164 form (+<country><number>)")
    transport = settings.sms.transport
    if transport == "outbox":
        return _to_outbox(settings.outbox_dir / "sms", number, text)
    if transport == "command":
        return _to_command(settings.sms.command, number, text, settings.sms.http_timeout)
    if transport == "http":
        return _to_http(settings.sms.http_url, number, text, settings.sms.http_timeout)
    raise DeliveryError(f"unknown SMS transport {transport!r}")


def _to_outbox(folder: Path, number: str, text: str) -> str:
    name = unique_name()
    # The temporary name is hidden and not *.txt, so a reader of sms/*.txt never sees half a file.
    tmp, final = folder / f".{name}.tmp", folder / f"{name}.txt"
    try:
        make_private_dir(folder.parent, folder.name)  # the outbox root and sms/
        write_private_file(tmp, f"To: {number}\n\n{text}\n".encode("utf-8"))
        publish(tmp, final)
    except OSError as exc:
        raise DeliveryError(f"cannot write to SMS outbox {folder}: {exc.strerror or exc}") from None
    return f"written to sms/{final.name}"


def _to_command(command: list[str], number: str, text: str, timeout: int) -> str:
    import subprocess

    if not command:
        raise DeliveryError("[sms] command is empty")
    program = Path(command[0]).name
    try:
        done = subprocess.run(
            [*command, number], input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False
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


def _to_http(url: str, number: str, text: str, timeout: int) -> str:
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
    body = json.dumps({"to": number, "text": text}, ensure_ascii=False).encode("utf-8")
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
