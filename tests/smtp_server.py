"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests: plain, STARTTLS or implicit TLS, optional AUTH.

    from smtp_server import smtp_server, Refuse
    with smtp_server() as server:
        ...  # point [mail] smtp_host = "127.0.0.1", smtp_port = server.port at it
        mail_from, rcpt_tos, data = server.messages[0]
"""

from __future__ import annotations

import logging
import socket
import ssl
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    """Accepts everything and records (mail_from, rcpt_tos, data bytes) per message."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.auth_logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class Refuse(Recorder):
    """Refuses at RCPT or at DATA with the given reply."""

    def __init__(self, stage: str = "RCPT", reply: str = "550 5.1.1 mailbox unavailable"):
        super().__init__()
        self.stage, self.reply = stage, reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stage == "RCPT":
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stage == "DATA":
            return self.reply
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Server:
    host: str
    port: int
    handler: object
    messages: list = field(default_factory=list)


# aiosmtpd warns on every AUTH session about plain-text AUTH, which these tests want on purpose.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _authenticator(handler, user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
            user.encode("utf-8"), password.encode("utf-8")
        )
        if ok and hasattr(handler, "auth_logins"):
            handler.auth_logins.append(user)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535

    return check


@contextmanager
def smtp_server(handler=None, tls_context: ssl.SSLContext | None = None, implicit_tls: bool = False,
                auth: tuple[str, str] | None = None, smtputf8: bool = True):
    """Run an aiosmtpd server in a thread for the duration of the block.

    tls_context: a server-side context; offered through STARTTLS, or for the whole connection
    when implicit_tls is true. auth: (user, password) that the server requires (AUTH PLAIN/LOGIN,
    allowed without TLS). smtputf8=False makes the server not advertise SMTPUTF8.
    """
    handler = handler if handler is not None else Recorder()
    kwargs: dict = {"enable_SMTPUTF8": smtputf8}
    if tls_context is not None and not implicit_tls:
        kwargs["tls_context"] = tls_context
    if auth is not None:
        kwargs.update(authenticator=_authenticator(handler, *auth), auth_require_tls=False, auth_required=True)
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ssl_context=tls_context if implicit_tls else None,
        ready_timeout=5, **kwargs,
    )
    controller.start()
    try:
        yield Server("127.0.0.1", port, handler, getattr(handler, "messages", []))
    finally:
        controller.stop()
