"""A real SMTP server (aiosmtpd) in the test process, on a loopback port."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Mailbox:
    """What the server accepted, and how it misbehaves on request: recipients listed in
    ``refuse`` get a permanent 550; ``mail_reply`` answers MAIL FROM instead of 250;
    ``data_replies`` answer the next DATA commands (one each) instead of accepting;
    ``quit_reply`` answers QUIT instead of 221; ``logins`` records who logged in."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    mail_reply: str | None = None
    data_replies: list[str] = field(default_factory=list)
    quit_reply: str | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.quit_reply or "221 Bye"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Accepts one account, ``us@er`` / ``p:ss w0rd``."""
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        with self.lock:
            self.logins.append((login, password))
        # handled=False: the server answers 535 itself on a failure.
        return AuthResult(success=(login, password) == ("us@er", "p:ss w0rd"), handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_server(
    mailbox: Mailbox,
    *,
    port: int | None = None,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: ssl.SSLContext | None = None,
    auth: bool = False,
    smtputf8: bool = True,
) -> Iterator[int]:
    """Serve SMTP on 127.0.0.1 until the block ends; yields the port.

    ``tls_context`` offers STARTTLS (``require_starttls`` insists on it); ``implicit_tls``
    serves SMTPS (TLS from the first byte); ``auth`` offers AUTH (see
    :meth:`Mailbox.authenticate`; allowed without TLS, as our sender does towards loopback);
    ``smtputf8`` offers SMTPUTF8 for internationalised addresses.
    """
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    if tls_context is not None:
        kwargs |= {"tls_context": tls_context, "require_starttls": require_starttls}
    if auth:
        kwargs |= {"authenticator": mailbox.authenticate, "auth_require_tls": False}
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port or free_port(),
        ssl_context=implicit_tls,
        **kwargs,
    )
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()
