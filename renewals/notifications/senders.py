"""Where email goes, chosen by ``RENEWALS_MAIL_URL``.

- ``smtp://user:pass@host:port``: SMTP, upgraded with STARTTLS when the server offers it;
- ``smtps://user:pass@host:port``: SMTP over implicit TLS;
- ``file:///dir``: one ``.eml`` file per message (the embedded default);
- ``console://``: printed to standard output.

Senders raise :class:`TemporarySendError` (retry later) or :class:`PermanentSendError`
(give up on this message). SMTP failures are classified by what they say about the message:

- the server or our configuration is at fault, and every message would fail the same way:
  temporary, so nothing is lost while it is fixed. Refused or dropped connections, timeouts,
  TLS errors, any 4xx, and also 5xx answers to the greeting, EHLO, STARTTLS, AUTH or
  ``MAIL FROM`` (a wrong password or sender address must not fail every email for good);
- this message cannot be delivered as it is: permanent. A 5xx to ``RCPT TO`` (no such
  recipient) or to ``DATA`` (content refused), or an internationalised address the server
  cannot take (no SMTPUTF8).

Credentials are only sent over TLS (STARTTLS or ``smtps``), except to a loopback relay: a
server that stops offering STARTTLS cannot strip the password out of us.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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


def eml_name(key: str) -> str:
    """The file a ``file://`` mail URL writes an outbox row's email to (by its dedupe key)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return f"{safe}.eml"


def batch_of(sender: Sender) -> AbstractContextManager[Sender]:
    """A sender for many messages in a row: the sender's own ``batch()`` when it has one
    (SMTP: one connection), otherwise the sender itself."""
    open_batch = getattr(sender, "batch", None)
    if open_batch is None:
        return nullcontext(sender)
    batch: AbstractContextManager[Sender] = open_batch()
    return batch


class FileSender:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["X-Renewals-Key"] or message["Message-ID"]).strip("<>")
        target = self.directory / eml_name(name)
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
        allow_plain_auth: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.username = username
        self.password = password
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.allow_plain_auth = allow_plain_auth

    def _connect(self) -> tuple[smtplib.SMTP, bool]:
        """An open session, and whether it is encrypted."""
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=SMTP_TIMEOUT_S, context=self.ssl_context
            ), True
        smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                return smtp, False
            smtp.starttls(context=self.ssl_context)
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp, True

    def _open(self) -> smtplib.SMTP:
        """Connect, secure and log in; every failure here is the server's or the
        configuration's, never the message's: temporary."""
        try:
            smtp, encrypted = self._connect()
        except (TimeoutError, OSError) as exc:  # smtplib's errors are OSErrors too
            raise TemporarySendError(f"SMTP unavailable: {_describe(exc)}") from None
        try:
            if self.username:
                if not encrypted and not self.allow_plain_auth:
                    raise TemporarySendError(
                        "SMTP server did not offer STARTTLS: credentials are not sent in the "
                        "clear (use smtps:// or a server with STARTTLS)"
                    )
                smtp.login(self.username, self.password or "")
        except TemporarySendError:
            smtp.close()
            raise
        except (TimeoutError, OSError) as exc:
            smtp.close()
            raise TemporarySendError(f"SMTP login failed: {_describe(exc)}") from None
        return smtp

    def send(self, message: EmailMessage) -> None:
        with self.batch() as session:
            session.send(message)

    @contextmanager
    def batch(self) -> Iterator[Sender]:
        """One SMTP session for many messages: connect and log in once, QUIT at the end."""
        session = _SmtpSession(self)
        try:
            yield session
        finally:
            session.close()


class _SmtpSession:
    """Messages sent over one connection, opened at the first message.

    A permanent refusal of one message leaves the session usable (smtplib resets it); any
    other failure closes it and the next message connects afresh. When connecting fails, every
    later message of the session fails the same way without trying again: a server that
    is down would otherwise cost one connect timeout per message.
    """

    def __init__(self, sender: SmtpSender) -> None:
        self._sender = sender
        self._smtp: smtplib.SMTP | None = None
        self._unavailable: str | None = None

    def send(self, message: EmailMessage) -> None:
        if self._unavailable is not None:
            raise TemporarySendError(self._unavailable)
        if self._smtp is None:
            try:
                self._smtp = self._sender._open()
            except TemporarySendError as exc:
                self._unavailable = str(exc)
                raise
        try:
            _send_on(self._smtp, message)
        except PermanentSendError:
            raise  # this message's fault: smtplib has reset the session for the next one
        except BaseException:
            self.close()  # the connection may be gone or half-way: the next one starts afresh
            raise

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            _close(smtp)


def _send_on(smtp: smtplib.SMTP, message: EmailMessage) -> None:
    """Send on an open session, mapping SMTP's answers to temporary or permanent errors."""
    try:
        smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted(code for code, _ in exc.recipients.values())
        if all(code >= 500 for code in codes):
            raise PermanentSendError(f"recipient refused ({codes})") from None
        raise TemporarySendError(f"recipient deferred ({codes})") from None
    except smtplib.SMTPSenderRefused as exc:
        raise TemporarySendError(
            f"sender address refused (check RENEWALS_MAIL_FROM): {_describe(exc)}"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentSendError(f"SMTP server cannot take this message: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        kind = PermanentSendError if exc.smtp_code >= 500 else TemporarySendError
        raise kind(f"message refused: {_describe(exc)}") from None
    except (TimeoutError, OSError) as exc:
        raise TemporarySendError(f"SMTP unavailable: {_describe(exc)}") from None


def _close(smtp: smtplib.SMTP) -> None:
    """Say goodbye without letting a failed QUIT turn an accepted message into a retry."""
    try:
        smtp.quit()
    except (TimeoutError, OSError):
        pass
    finally:
        smtp.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        return f"SMTP {exc.smtp_code} {text}"
    return f"{type(exc).__name__}: {exc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            allow_plain_auth=_is_loopback(parts.hostname or "localhost"),
        )
    raise ValueError(f"unsupported mail URL scheme {parts.scheme!r}")
