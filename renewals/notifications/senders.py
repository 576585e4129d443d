"""Where email goes, chosen by ``RENEWALS_MAIL_URL``.

- ``smtp://user:pass@host:port``: SMTP, upgraded with STARTTLS when the server offers it;
- ``smtps://user:pass@host:port``: SMTP over implicit TLS;
- ``file:///dir``: one ``.eml`` file per message (the embedded default);
- ``console://``: printed to standard output.

Senders raise :class:`TemporarySendError` (retry later: 4xx, refused connection, timeout) or
:class:`PermanentSendError` (give up: 5xx, bad address).
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

SMTP_TIMEOUT_S = 15.0


class SendError(Exception):
    pass


class TemporarySendError(SendError):
    """The message may go through later: keep it and retry."""


class PermanentSendError(SendError):
    """The message will never go through as it is: mark it failed with the reason."""


class Sender(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class FileSender:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["X-Renewals-Key"] or message["Message-ID"]).strip("<>")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        target = self.directory / f"{safe}.eml"
        partial = target.with_suffix(".eml.tmp")
        partial.write_bytes(message.as_bytes())
        partial.replace(target)  # atomic: a reader never sees half a message


class ConsoleSender:
    def send(self, message: EmailMessage) -> None:
        sys.stdout.write(message.as_string() + "\n")
        sys.stdout.flush()


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        username: str | None,
        password: str | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.username = username
        self.password = password
        self.ssl_context = ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=SMTP_TIMEOUT_S, context=self.ssl_context
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self.ssl_context)
            smtp.ehlo()
        return smtp

    def send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                raise PermanentSendError(f"recipient refused ({codes})") from None
            raise TemporarySendError(f"recipient deferred ({codes})") from None
        except smtplib.SMTPResponseException as exc:
            kind = PermanentSendError if exc.smtp_code >= 500 else TemporarySendError
            raise kind(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TemporarySendError(f"SMTP unavailable: {type(exc).__name__}: {exc}") from None


def sender_from_url(url: str) -> Sender:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileSender(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme == "console":
        return ConsoleSender()
    if parts.scheme in ("smtp", "smtps"):
        implicit = parts.scheme == "smtps"
        return SmtpSender(
            parts.hostname or "localhost",
            parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    raise ValueError(f"unsupported mail URL scheme {parts.scheme!r}")
