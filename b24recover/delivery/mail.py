"""Recovery mail: building an RFC 5322 message, and sending it to a Maildir outbox or over SMTP."""

from __future__ import annotations

import base64
import copy
import os
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses

from . import DeliveryError, make_private_dir, one_line, publish, unique_name, write_private_file

CAFILE_ENV = "B24RECOVER_SMTP_CAFILE"
_MAX_LINE = 998  # RFC 5322 line limit without a transfer encoding


def build_email(*, sender: str, recipient: str, subject: str, body: str, lang: str, message_id: str) -> EmailMessage:
    msg = EmailMessage()  # policy.default: RFC 2047 for non-ASCII headers unless flattened as utf8
    # Content-* headers are cleared by set_content, so the body goes in first.
    msg.set_content(body, subtype="plain", charset="utf-8", cte=_transfer_encoding(body))
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = " ".join(subject.split())  # a newline in a header would be an injection
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = f"<{message_id.strip('<>')}>"
    msg["Content-Language"] = lang
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to no-reply@
    return msg


def _transfer_encoding(body: str) -> str:
    # Plain 7bit/8bit keeps the link copy-pastable in the raw file; quoted-printable only when a
    # line is too long for SMTP.
    if any(len(line.encode("utf-8")) > _MAX_LINE for line in body.splitlines()):
        return "quoted-printable"
    return "7bit" if body.isascii() else "8bit"


def _addresses(msg: EmailMessage) -> list[str]:
    return [addr for _, addr in getaddresses([msg["From"] or "", msg["To"] or ""]) if addr]


def _is_international(msg: EmailMessage) -> bool:
    return not all(addr.isascii() for addr in _addresses(msg))


def send_email(settings, msg: EmailMessage, accepted=None) -> str:
    """Deliver msg. accepted(), if given, is called over SMTP as soon as the server has taken the
    message, before the goodbye: the caller records the delivery a round trip sooner, which
    narrows the window in which a crash makes the message go out twice."""
    transport = settings.mail.transport
    if transport == "outbox":
        return _to_maildir(settings.outbox_dir / "mail", msg)
    if transport == "smtp":
        return _to_smtp(settings.mail, msg, accepted)
    raise DeliveryError(f"unknown mail transport {transport!r}")


# --- Maildir ---------------------------------------------------------------------------------


def _to_maildir(root, msg: EmailMessage) -> str:
    """Maildir delivery: write tmp/<name> (0600, fsynced), then rename into new/<name>."""
    # An internationalised address cannot be RFC 2047-encoded, so such messages are stored as
    # SMTPUTF8 (raw UTF-8 headers), as a server accepting them would store them.
    data = msg.as_bytes(policy=msg.policy.clone(utf8=_is_international(msg)))
    name = unique_name()
    try:
        for sub in ("tmp", "new", "cur"):
            make_private_dir(root / sub)
        write_private_file(root / "tmp" / name, data)
        publish(root / "tmp" / name, root / "new" / name)
    except OSError as exc:
        raise DeliveryError(f"cannot write to Maildir {root}: {exc.strerror or exc}") from None
    return f"delivered to Maildir new/{name}"


# --- SMTP ------------------------------------------------------------------------------------


class _ReplyMixin:
    """Keeps the server's answer to DATA ("250 2.0.0 Ok: queued as X"), which sendmail drops."""

    data_reply: tuple[int, bytes] | None = None

    def data(self, msg):
        self.data_reply = super().data(msg)
        return self.data_reply


class _SMTP(_ReplyMixin, smtplib.SMTP):
    pass


class _SMTP_SSL(_ReplyMixin, smtplib.SMTP_SSL):
    pass


def _password(mail) -> str:
    name = mail.smtp_password_env
    if not name:
        raise DeliveryError("[mail] smtp_user is set but smtp_password_env does not name a variable")
    value = os.environ.get(name)
    if value is None:
        raise DeliveryError(f"environment variable {name} (the SMTP password) is not set")
    return value


def _tls_context() -> ssl.SSLContext:
    # B24RECOVER_SMTP_CAFILE trusts a private CA (a company relay, or the tests' own certificate).
    cafile = os.environ.get(CAFILE_ENV) or None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"cannot load {CAFILE_ENV}={cafile}: {one_line(exc.strerror or str(exc))}") from None


def _to_smtp(mail, msg: EmailMessage, accepted=None) -> str:
    password = _password(mail) if mail.smtp_user else None  # before connecting: fail fast, no traffic
    where = f"{mail.smtp_host}:{mail.smtp_port}"
    try:
        client = _connect(mail)
        try:
            result = _session(client, mail, password, msg, where)
            if accepted is not None:
                accepted()
        except BaseException:
            client.close()  # no QUIT: a stalled server would cost a second timeout
            raise
        _quit(client)
        return result
    except (OSError, ValueError) as exc:  # smtplib, ssl and socket errors are all OSErrors
        raise DeliveryError(_describe(exc, mail)) from None


def _session(client, mail, password: str | None, msg: EmailMessage, where: str) -> str:
    if mail.smtp_security == "starttls":
        client.ehlo()
        client.starttls(context=_tls_context())
        client.ehlo()
    if password is not None:
        _login(client, mail.smtp_user, password, where)
    return _transmit(client, msg, where)


def _quit(client) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the message is already accepted; a rude goodbye changes nothing
    finally:
        client.close()


def _connect(mail):
    if mail.smtp_security == "tls":
        return _SMTP_SSL(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout, context=_tls_context())
    return _SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout)


def _login(client, user: str, password: str, where: str) -> None:
    if user.isascii() and password.isascii():
        client.login(user, password)
        return
    # smtplib encodes credentials as ASCII; RFC 4616 PLAIN carries UTF-8, so do that one by hand.
    client.ehlo_or_helo_if_needed()
    if "plain" not in client.esmtp_features.get("auth", "").lower().split():
        raise DeliveryError(f"non-ASCII SMTP credentials need AUTH PLAIN, which {where} does not offer")
    token = base64.b64encode(f"\0{user}\0{password}".encode("utf-8")).decode("ascii")
    code, resp = client.docmd("AUTH", "PLAIN " + token)
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, resp)


def _transmit(client, msg: EmailMessage, where: str) -> str:
    client.ehlo_or_helo_if_needed()
    msg, options = _adapt(msg, client.has_extn, where)
    refused = client.send_message(msg, mail_options=options)  # adds SMTPUTF8 itself when needed
    if refused:  # some recipients refused, others accepted: still a failure for a one-recipient mail
        code, text = next(iter(refused.values()))
        raise DeliveryError(f"{code} {one_line(text)}")
    code, text = client.data_reply or (250, b"")
    return f"{code} {one_line(text)}"


def _adapt(msg: EmailMessage, has_extn, where: str) -> tuple[EmailMessage, tuple[str, ...]]:
    """Fit the message to what the server advertises (RFC 6152 8BITMIME, RFC 6531 SMTPUTF8)."""
    if _is_international(msg) and not has_extn("smtputf8"):
        ascii_msg = _idna_domains(msg)
        if ascii_msg is None:
            raise DeliveryError(f"{where} does not support SMTPUTF8, needed for a non-ASCII mailbox name")
        msg = ascii_msg
    if _is_international(msg) or msg.get("Content-Transfer-Encoding") != "8bit":
        return msg, ()  # send_message asserts SMTPUTF8 and BODY=8BITMIME itself for international mail
    if has_extn("8bitmime"):
        return msg, ("BODY=8BITMIME",)
    seven_bit = copy.copy(msg)
    seven_bit.policy = msg.policy.clone(cte_type="7bit")  # generator re-encodes the body as base64
    return seven_bit, ()


def _idna_domains(msg: EmailMessage) -> EmailMessage | None:
    """user@пример.рф -> user@xn--e1afmkfd.xn--p1ai for servers without SMTPUTF8; None if a local part is non-ASCII."""
    clone = copy.deepcopy(msg)
    for header in ("From", "To"):
        rewritten = []
        for display, addr in getaddresses([msg[header] or ""]):
            local, _, domain = addr.rpartition("@")
            if not local.isascii():
                return None
            try:
                domain = domain.encode("idna").decode("ascii")
            except UnicodeError:
                return None
            rewritten.append(f"{display} <{local}@{domain}>" if display else f"{local}@{domain}")
        del clone[header]
        clone[header] = ", ".join(rewritten)
    return clone


def _describe(exc: BaseException, mail) -> str:
    where = f"{mail.smtp_host}:{mail.smtp_port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return f"{code} {one_line(text)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {one_line(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):  # smtplib wraps a read timeout in SMTPServerDisconnected
            return f"no answer from {where} within {mail.smtp_timeout} s (timed out)"
        return f"connection closed by {where}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where}: {one_line(str(exc))}"
    if isinstance(exc, smtplib.SMTPException):
        return f"{where}: {one_line(str(exc))}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {one_line(exc.verify_message or str(exc))}"
    if isinstance(exc, ssl.SSLError):
        reason = one_line(exc.reason or str(exc))
        if reason == "WRONG_VERSION_NUMBER":  # the usual cause: a plain-text port
            reason += " (the port does not speak implicit TLS; try smtp_security = \"starttls\")"
        return f"TLS failure with {where}: {reason}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {mail.smtp_timeout} s (timed out)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {mail.smtp_host}: {one_line(exc.strerror or str(exc))}"
    if isinstance(exc, OSError):
        return f"cannot talk to {where}: {one_line(exc.strerror or str(exc))}"
    return f"{where}: {type(exc).__name__}: {one_line(str(exc))}"
