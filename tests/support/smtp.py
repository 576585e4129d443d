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
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mailbox:
    """What the server accepted; recipients listed in ``refuse`` get a permanent 550."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"


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
) -> Iterator[int]:
    """Serve SMTP on 127.0.0.1 until the block ends; yields the port.

    ``tls_context`` offers STARTTLS (``require_starttls`` insists on it); ``implicit_tls``
    serves SMTPS (TLS from the first byte).
    """
    kwargs: dict[str, Any] = {}
    if tls_context is not None:
        kwargs = {"tls_context": tls_context, "require_starttls": require_starttls}
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
