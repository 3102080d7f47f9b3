"""Delivery transports against real servers and programs: aiosmtpd, http.server, small scripts."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import mailbox
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from smtp_server import Refuse, smtp_server

from b24recover.config import Settings
from b24recover.delivery import DeliveryError
from b24recover.delivery.mail import _adapt, build_email, send_email
from b24recover.delivery.sms import send_sms

LINK = (
    "https://portal.example.com/auth/index.php?change_password=yes&lang=ru"
    "&USER_CHECKWORD=0123456789abcdefghijklmnopqrstuv&USER_LOGIN=ivan"
)
SUBJECT_RU = "Восстановление пароля на портале"
BODY_RU = f"Здравствуйте, Иван!\n\nЧтобы сменить пароль, откройте ссылку:\n{LINK}\n"


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def permissive_umask(request):
    """Delivery runs in this process: the modes must come from the code, whatever the umask."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def parse(data: bytes):
    # SMTP carries CRLF line ends, Maildir files LF: compare the content, not the wire form.
    return email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)


def make_settings(tmp_path: Path, **mail) -> Settings:
    settings = Settings(db_path=tmp_path / "b24.db")
    for key, value in mail.items():
        setattr(settings.mail, key, value)
    return settings


def smtp_settings(tmp_path, server, **mail) -> Settings:
    return make_settings(tmp_path, transport="smtp", smtp_host="127.0.0.1", smtp_port=server.port,
                         smtp_timeout=5, **mail)


def ru_message(recipient="ivan@example.com", message_id="m1.abc@portal.example.com"):
    return build_email(sender="no-reply@portal.example.com", recipient=recipient, subject=SUBJECT_RU,
                       body=BODY_RU, lang="ru", message_id=message_id)


# --- building --------------------------------------------------------------------------------


def test_build_email_has_the_rfc5322_headers_and_round_trips():
    parsed = parse(ru_message().as_bytes())
    assert parsed["From"] == "no-reply@portal.example.com"
    assert parsed["To"] == "ivan@example.com"
    assert parsed["Subject"] == SUBJECT_RU
    assert parsed["Message-ID"] == "<m1.abc@portal.example.com>"
    assert parsed["Content-Language"] == "ru"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content() == BODY_RU
    assert abs(parsedate_to_datetime(parsed["Date"]).timestamp() - time.time()) < 60


def test_build_email_keeps_the_link_on_one_line_and_headers_ascii():
    raw = ru_message().as_bytes()
    head, _, body = raw.partition(b"\n\n")
    assert head.isascii()  # the Cyrillic subject is RFC 2047-encoded for plain SMTP
    assert LINK.encode() in body  # 8bit, not quoted-printable: the operator can copy the link
    assert b"Content-Transfer-Encoding: 8bit" in head


def test_build_email_flattens_a_subject_with_newlines_into_one_header():
    msg = build_email(sender="a@example.com", recipient="b@example.com", subject="Reset\r\nBcc: x@evil.example",
                      body="hi", lang="en", message_id="<x@y>")
    parsed = parse(msg.as_bytes())
    assert parsed["Subject"] == "Reset Bcc: x@evil.example"
    assert parsed["Bcc"] is None
    assert parsed["Message-ID"] == "<x@y>"
    assert msg["Content-Transfer-Encoding"] == "7bit"


def test_server_without_8bitmime_gets_a_7bit_body():
    msg, options = _adapt(ru_message(), lambda ext: ext == "smtputf8", "relay:25")
    assert options == ()
    data = msg.as_bytes()
    assert data.isascii()
    assert parse(data).get_content() == BODY_RU
    assert _adapt(ru_message(), lambda ext: True, "relay:25")[1] == ("BODY=8BITMIME",)


# --- Maildir outbox --------------------------------------------------------------------------


def test_maildir_outbox_writes_a_private_file_in_new(tmp_path, permissive_umask):
    settings = make_settings(tmp_path)
    result = send_email(settings, ru_message())
    root = tmp_path / "b24.db.outbox" / "mail"
    files = list((root / "new").iterdir())
    assert len(files) == 1 and result == f"delivered to Maildir new/{files[0].name}"
    assert mode(files[0]) == 0o600
    assert all(mode(root / sub) == 0o700 for sub in ("tmp", "new", "cur"))
    assert list((root / "tmp").iterdir()) == []
    assert ":" not in files[0].name and "/" not in files[0].name

    (key, message), = mailbox.Maildir(root, factory=None, create=False).items()
    assert key == files[0].name
    parsed = parse(message.as_bytes())
    assert parsed["Subject"] == SUBJECT_RU
    assert parsed["Content-Language"] == "ru"
    assert parsed.get_content() == BODY_RU


def test_maildir_names_are_unique(tmp_path):
    settings = make_settings(tmp_path, outbox_dir=str(tmp_path / "out"))
    names = {send_email(settings, ru_message()) for _ in range(20)}
    assert len(names) == 20
    assert len(list((tmp_path / "out" / "mail" / "new").iterdir())) == 20


def test_maildir_stores_an_internationalised_address_as_utf8(tmp_path):
    settings = make_settings(tmp_path)
    send_email(settings, ru_message(recipient="иван@пример.рф"))
    (path,) = (tmp_path / "b24.db.outbox" / "mail" / "new").iterdir()
    parsed = parse(path.read_bytes())
    assert parsed["To"] == "иван@пример.рф"
    assert parsed["Subject"] == SUBJECT_RU


def test_maildir_write_failure_is_a_delivery_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = make_settings(tmp_path, outbox_dir=str(blocker))
    with pytest.raises(DeliveryError, match="cannot write to Maildir"):
        send_email(settings, ru_message())


# --- SMTP ------------------------------------------------------------------------------------


def test_smtp_delivers_with_envelope_headers_and_body(tmp_path):
    with smtp_server() as server:
        result = send_email(smtp_settings(tmp_path, server), ru_message())
    assert result == "250 2.0.0 Ok: queued as Q1"
    ((mail_from, rcpt_tos, data),) = server.messages
    assert mail_from == "no-reply@portal.example.com"
    assert rcpt_tos == ["ivan@example.com"]
    parsed = parse(data)
    assert parsed["Subject"] == SUBJECT_RU
    assert parsed["Content-Language"] == "ru"
    assert parsed.get_content() == BODY_RU


def test_smtp_internationalised_recipient_uses_smtputf8(tmp_path):
    with smtp_server() as server:
        send_email(smtp_settings(tmp_path, server), ru_message(recipient="иван@пример.рф"))
    ((_, rcpt_tos, data),) = server.messages
    assert rcpt_tos == ["иван@пример.рф"]
    assert parse(data)["To"] == "иван@пример.рф"


def test_smtp_without_smtputf8_falls_back_to_idna_domains(tmp_path):
    with smtp_server(smtputf8=False) as server:
        send_email(smtp_settings(tmp_path, server), ru_message(recipient="ivan@пример.рф"))
        with pytest.raises(DeliveryError, match="does not support SMTPUTF8"):
            send_email(smtp_settings(tmp_path, server), ru_message(recipient="иван@пример.рф"))
    ((_, rcpt_tos, data),) = server.messages
    assert rcpt_tos == ["ivan@xn--e1afmkfd.xn--p1ai"]
    assert parse(data)["To"] == "ivan@xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_smtp_refusal_is_a_delivery_error_with_the_code(tmp_path, stage):
    with smtp_server(Refuse(stage)) as server:
        with pytest.raises(DeliveryError) as caught:
            send_email(smtp_settings(tmp_path, server), ru_message())
    assert str(caught.value) == "550 5.1.1 mailbox unavailable"
    assert server.messages == []


def test_smtp_closed_port_is_reported_as_refused(tmp_path):
    # Refused at once, not waited on until the timeout (how long that takes: bench/bench_timeouts.py).
    with smtp_server() as server:
        port = server.port
    settings = make_settings(tmp_path, transport="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=3600)
    with pytest.raises(DeliveryError) as caught:
        send_email(settings, ru_message())
    assert str(caught.value) == f"connection refused by 127.0.0.1:{port}"


def test_smtp_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never says hello
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = make_settings(tmp_path, transport="smtp", smtp_host="127.0.0.1",
                                 smtp_port=listener.getsockname()[1], smtp_timeout=1)
        with pytest.raises(DeliveryError) as caught:
            send_email(settings, ru_message())
        # one connection, given up after the configured timeout (timing: bench/bench_timeouts.py)
        listener.setblocking(False)
        accepted = listener.accept()[0]
        accepted.close()
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert str(caught.value) == f"no answer from 127.0.0.1:{settings.mail.smtp_port} within 1 s (timed out)"


def test_smtp_auth_reads_the_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-Pa55")
    with smtp_server(auth=("relay-user", "s3cret-Pa55")) as server:
        settings = smtp_settings(tmp_path, server, smtp_user="relay-user", smtp_password_env="TEST_SMTP_PASSWORD")
        send_email(settings, ru_message())
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        with pytest.raises(DeliveryError) as caught:
            send_email(settings, ru_message())
    assert server.handler.auth_logins == ["relay-user"]
    assert len(server.messages) == 1
    assert str(caught.value).startswith("535 ")
    assert "wrong" not in str(caught.value)


def test_smtp_auth_with_a_non_ascii_password(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "пароль-реле")
    with smtp_server(auth=("relay-user", "пароль-реле")) as server:
        settings = smtp_settings(tmp_path, server, smtp_user="relay-user", smtp_password_env="TEST_SMTP_PASSWORD")
        send_email(settings, ru_message())
    assert len(server.messages) == 1


def test_smtp_auth_missing_env_var_names_it_and_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    with smtp_server(auth=("relay-user", "x")) as server:
        settings = smtp_settings(tmp_path, server, smtp_user="relay-user", smtp_password_env="TEST_SMTP_PASSWORD")
        with pytest.raises(DeliveryError, match="TEST_SMTP_PASSWORD"):
            send_email(settings, ru_message())
    assert server.messages == []


# --- SMTP over TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trust_test_ca(certificate, monkeypatch):
    monkeypatch.setenv("B24RECOVER_SMTP_CAFILE", str(certificate[0]))


def test_smtp_starttls_with_auth(tmp_path, server_tls, trust_test_ca, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with smtp_server(tls_context=server_tls, auth=("relay-user", "s3cret")) as server:
        settings = smtp_settings(tmp_path, server, smtp_security="starttls", smtp_user="relay-user",
                                 smtp_password_env="TEST_SMTP_PASSWORD")
        assert send_email(settings, ru_message()).startswith("250 ")
    assert parse(server.messages[0][2])["Subject"] == SUBJECT_RU


def test_smtp_implicit_tls(tmp_path, server_tls, trust_test_ca):
    with smtp_server(tls_context=server_tls, implicit_tls=True) as server:
        send_email(smtp_settings(tmp_path, server, smtp_security="tls"), ru_message())
    assert server.messages[0][1] == ["ivan@example.com"]


@pytest.mark.parametrize("security, implicit", [("starttls", False), ("tls", True)])
def test_smtp_untrusted_certificate_is_refused(tmp_path, server_tls, monkeypatch, security, implicit):
    monkeypatch.delenv("B24RECOVER_SMTP_CAFILE", raising=False)
    with smtp_server(tls_context=server_tls, implicit_tls=implicit) as server:
        with pytest.raises(DeliveryError, match="TLS certificate of 127.0.0.1:.* not trusted"):
            send_email(smtp_settings(tmp_path, server, smtp_security=security), ru_message())
    assert server.messages == []


def test_smtp_starttls_required_but_not_offered(tmp_path, trust_test_ca):
    with smtp_server() as server:
        with pytest.raises(DeliveryError, match="STARTTLS"):
            send_email(smtp_settings(tmp_path, server, smtp_security="starttls"), ru_message())
    assert server.messages == []


def test_smtp_unreadable_cafile_is_named(tmp_path, server_tls, monkeypatch):
    monkeypatch.setenv("B24RECOVER_SMTP_CAFILE", str(tmp_path / "missing.pem"))
    with smtp_server(tls_context=server_tls, implicit_tls=True) as server:
        with pytest.raises(DeliveryError, match="cannot load B24RECOVER_SMTP_CAFILE="):
            send_email(smtp_settings(tmp_path, server, smtp_security="tls"), ru_message())


def test_smtp_implicit_tls_against_a_plain_port_says_so(tmp_path, trust_test_ca):
    with smtp_server() as server:
        with pytest.raises(DeliveryError, match="does not speak implicit TLS"):
            send_email(smtp_settings(tmp_path, server, smtp_security="tls"), ru_message())


# --- SMS outbox ------------------------------------------------------------------------------


def sms_settings(tmp_path, **sms) -> Settings:
    settings = Settings(db_path=tmp_path / "b24.db")
    for key, value in sms.items():
        setattr(settings.sms, key, value)
    return settings


def test_sms_outbox_file_format_and_mode(tmp_path, permissive_umask):
    settings = sms_settings(tmp_path)
    result = send_sms(settings, "+79123456789", "Код для смены пароля: 123456")
    folder = tmp_path / "b24.db.outbox" / "sms"
    (path,) = folder.iterdir()
    assert result == f"written to sms/{path.name}" and path.suffix == ".txt"
    assert path.read_bytes() == "To: +79123456789\n\nКод для смены пароля: 123456\n".encode()
    assert mode(path) == 0o600 and mode(folder) == 0o700


def test_sms_outbox_names_are_unique(tmp_path):
    settings = sms_settings(tmp_path)
    for n in range(10):
        send_sms(settings, "+79123456789", f"code {n}")
    texts = sorted(p.read_text().splitlines()[-1] for p in (tmp_path / "b24.db.outbox" / "sms").glob("*.txt"))
    assert texts == [f"code {n}" for n in range(10)]


@pytest.mark.parametrize("number", ["79123456789", "+7912\nBcc: x", "-rf", "+0123", ""])
def test_sms_refuses_a_number_that_is_not_e164(tmp_path, number):
    with pytest.raises(DeliveryError, match="E.164"):
        send_sms(sms_settings(tmp_path), number, "text")
    assert not (tmp_path / "b24.db.outbox").exists()


# --- SMS command -----------------------------------------------------------------------------


def script(tmp_path: Path, name: str, code: str) -> list[str]:
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    return [sys.executable, str(path)]


def test_sms_command_gets_the_number_as_argument_and_text_on_stdin(tmp_path):
    log = tmp_path / "sent.jsonl"
    command = script(tmp_path, "gateway.py", (
        "import json, sys\n"
        f"with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.buffer.read().decode('utf-8')}) + '\\n')\n"
        "print('queued id 42')\n"
    ))
    settings = sms_settings(tmp_path, transport="command", command=[*command, "--route", "main"])
    result = send_sms(settings, "+79123456789", "Код: 123456")
    assert result == f"accepted by {Path(sys.executable).name}: queued id 42"
    (entry,) = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert entry == {"argv": ["--route", "main", "+79123456789"], "stdin": "Код: 123456"}


def test_sms_command_failure_reports_exit_code_and_last_stderr_line(tmp_path):
    command = script(tmp_path, "down.py", (
        "import sys\n"
        "sys.stdin.read()\n"
        "print('connecting...', file=sys.stderr)\n"
        "print('modem not registered on the network', file=sys.stderr)\n"
        "sys.exit(3)\n"
    ))
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms_settings(tmp_path, transport="command", command=command), "+79123456789", "Код: 123456")
    assert str(caught.value).endswith("failed (exit code 3): modem not registered on the network")


def test_sms_command_echoing_the_code_does_not_leak_it_into_the_error(tmp_path):
    command = script(tmp_path, "echo.py", (
        "import sys\n"
        "sys.stderr.write('rejected message: ' + sys.stdin.read())\n"
        "sys.exit(1)\n"
    ))
    link_text = "Reset: https://p.example.com/?USER_CHECKWORD=abcdefghijklmnopqrstuvwxyzabcdef code 654321"
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms_settings(tmp_path, transport="command", command=command), "+79123456789", link_text)
    assert "654321" not in str(caught.value) and "abcdefghijklmnop" not in str(caught.value)
    assert "rejected message: Reset:" in str(caught.value) and "[redacted]" in str(caught.value)


def test_sms_command_missing_program(tmp_path):
    settings = sms_settings(tmp_path, transport="command", command=[str(tmp_path / "no-such-sender")])
    with pytest.raises(DeliveryError, match="cannot run no-such-sender"):
        send_sms(settings, "+79123456789", "text")


def test_sms_command_timeout(tmp_path):
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    command = script(tmp_path, "slow.py", f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                          f"time.sleep(30)\nopen({str(done_file)!r}, 'w').write('done')\n")
    settings = sms_settings(tmp_path, transport="command", command=command, http_timeout=1)
    with pytest.raises(DeliveryError) as caught:
        send_sms(settings, "+79123456789", "text")
    assert str(caught.value) == f"{Path(command[0]).name} did not finish within 1 s"
    # the program was stopped at the timeout, not waited for, and not left running (timing: bench/)
    assert not done_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


# --- SMS over HTTP ---------------------------------------------------------------------------


@contextmanager
def http_gateway(status: int, answer: str, headers: dict | None = None):
    received = []  # (path, Content-Type, Authorization, JSON body) per request

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], self.headers["Authorization"], json.loads(body)))
            payload = answer.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/send", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_sms_http_posts_json(tmp_path):
    with http_gateway(200, '{"id": "abc", "status": "queued"}') as (url, received):
        result = send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "Код: 123456")
    assert result == 'HTTP 200 {"id": "abc", "status": "queued"}'
    assert received == [
        ("/send", "application/json; charset=utf-8", None, {"to": "+79123456789", "text": "Код: 123456"})
    ]


def test_sms_http_url_credentials_become_basic_auth(tmp_path):
    with http_gateway(202, "") as (url, received):
        url = url.replace("http://", "http://acme:p%40ss%20w@")
        assert send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "t") == "HTTP 202"
    ((path, _, authorization, _),) = received
    assert (path, authorization) == ("/send", "Basic " + base64.b64encode(b"acme:p@ss w").decode())


def test_sms_http_error_status_is_a_delivery_error(tmp_path):
    with http_gateway(503, "gateway overloaded,\ntry later") as (url, received):
        with pytest.raises(DeliveryError) as caught:
            send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "text")
    assert str(caught.value) == "HTTP 503 gateway overloaded, try later"
    assert len(received) == 1


def test_sms_http_error_echoing_the_text_is_scrubbed(tmp_path):
    with http_gateway(400, "bad text: Код: 123456") as (url, _):
        with pytest.raises(DeliveryError) as caught:
            send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "Код: 123456")
    assert str(caught.value) == "HTTP 400 bad text: Код: [redacted]"


def test_sms_http_redirect_is_not_followed(tmp_path):
    with http_gateway(302, "moved", {"Location": "/login"}) as (url, received):
        with pytest.raises(DeliveryError, match="^HTTP 302 moved$"):
            send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "text")
    assert [request[0] for request in received] == ["/send"]


def test_sms_http_unreachable_and_bad_url(tmp_path):
    with http_gateway(200, "") as (url, _):
        pass  # closed again: nothing listens on the port now
    with pytest.raises(DeliveryError, match="connection refused by 127.0.0.1:"):
        send_sms(sms_settings(tmp_path, transport="http", http_url=url), "+79123456789", "text")
    with pytest.raises(DeliveryError, match="http_url"):
        send_sms(sms_settings(tmp_path, transport="http", http_url="file:///etc/passwd"), "+79123456789", "text")


def test_sms_http_stalled_gateway_times_out(tmp_path):
    with socket.socket() as listener:  # the connection is accepted by the kernel, never answered
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        url = f"http://127.0.0.1:{port}/send"
        with pytest.raises(DeliveryError) as caught:
            send_sms(sms_settings(tmp_path, transport="http", http_url=url, http_timeout=1), "+79123456789", "t")
    assert str(caught.value) == f"no answer from 127.0.0.1:{port} within 1 s (timed out)"
