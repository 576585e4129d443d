"""The senders on their own, against a real SMTP server (aiosmtpd in the test process): a
login taken from the mail URL, credentials never sent in the clear, and every failure
classified by what it says about the message (temporary: keep it and retry; permanent: this
message can never go out). No database here; the outbox rows are in test_outbox.py."""

from __future__ import annotations

import smtplib
import socket
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from renewals.config import Settings
from renewals.notifications import senders
from renewals.notifications.examples import SAMPLES
from renewals.notifications.rendering import build_message, render
from renewals.notifications.senders import (
    PermanentSendError,
    SmtpSender,
    TemporarySendError,
    sender_from_url,
)
from tests.support.smtp import Mailbox, free_port, smtp_server

# The Mailbox's one account: "us@er" / "p:ss w0rd", percent-encoded in the URL.
GOOD_LOGIN = "us%40er:p%3Ass%20w0rd"


def _message(recipient: str = "jane@example.com") -> EmailMessage:
    settings = Settings(merchant_name="Example Merchant", mail_from="billing@example.com")
    rendered = render("receipt", SAMPLES["receipt"], settings)
    return build_message(
        rendered,
        recipient=recipient,
        dedupe_key="7:20261201T090000Z:receipt:0",
        queued_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        settings=settings,
    )


def _plain(port: int) -> SmtpSender:
    return SmtpSender("127.0.0.1", port, implicit_tls=False, username=None, password=None)


def test_login_with_the_credentials_in_the_mail_url() -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, auth=True) as port:
        sender_from_url(f"smtp://{GOOD_LOGIN}@127.0.0.1:{port}").send(_message())
    assert mailbox.logins == [("us@er", "p:ss w0rd")]
    [received] = mailbox.messages
    assert received["Subject"] == "Receipt: 1,500 JPY paid to Example Merchant"


def test_a_wrong_password_is_temporary_so_nothing_is_failed_for_a_config_mistake() -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, auth=True) as port:
        sender = sender_from_url(f"smtp://us%40er:wrong-password@127.0.0.1:{port}")
        with pytest.raises(TemporarySendError, match="login failed: SMTP 535") as caught:
            sender.send(_message())
    assert "wrong-password" not in str(caught.value)
    assert mailbox.messages == []


def test_credentials_are_not_sent_in_the_clear() -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, auth=True) as port:  # no STARTTLS on offer
        sender = SmtpSender(
            "127.0.0.1", port, implicit_tls=False, username="us@er", password="p:ss w0rd"
        )
        with pytest.raises(TemporarySendError, match="did not offer STARTTLS"):
            sender.send(_message())
    assert mailbox.logins == []
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("url", "plain_auth"),
    [
        ("smtp://u:p@127.0.0.1:2525", True),  # a local relay
        ("smtp://u:p@localhost:2525", True),
        ("smtp://u:p@smtp.example.com:587", False),
        ("smtps://u:p@smtp.example.com", False),
    ],
)
def test_only_loopback_relays_may_take_a_password_without_tls(url: str, plain_auth: bool) -> None:
    sender = sender_from_url(url)
    assert isinstance(sender, SmtpSender)
    assert sender.allow_plain_auth is plain_auth
    assert (sender.username, sender.password) == ("u", "p")


def test_smtp_url_defaults() -> None:
    plain, tls = sender_from_url("smtp://mail.example.com"), sender_from_url("smtps://mx.example")
    assert isinstance(plain, SmtpSender) and isinstance(tls, SmtpSender)
    assert (plain.port, plain.implicit_tls, plain.username) == (25, False, None)
    assert (tls.port, tls.implicit_tls) == (465, True)
    with pytest.raises(ValueError, match="unsupported"):
        sender_from_url("http://example.com")


@pytest.mark.parametrize(
    ("setup", "error", "reason"),
    [
        # The message's fault: it will never go through as it is.
        ({"refuse": {"jane@example.com"}}, PermanentSendError, "recipient refused ([550])"),
        ({"data_replies": ["554 5.7.1 refused as spam"]}, PermanentSendError, "SMTP 554"),
        # The server's or our configuration's fault: keep the message, try again later.
        ({"data_replies": ["451 4.3.0 try again later"]}, TemporarySendError, "SMTP 451"),
        ({"mail_reply": "553 5.7.1 sender not allowed"}, TemporarySendError, "MAIL_FROM"),
        ({"mail_reply": "421 4.3.2 shutting down"}, TemporarySendError, "SMTP 421"),
    ],
)
def test_failures_are_classified_by_what_they_say_about_the_message(
    setup: dict[str, object], error: type[Exception], reason: str
) -> None:
    mailbox = Mailbox(**setup)  # type: ignore[arg-type]
    with smtp_server(mailbox) as port, pytest.raises(error) as caught:
        _plain(port).send(_message())
    assert reason in str(caught.value)
    assert "jane@example.com" not in str(caught.value)
    assert mailbox.messages == []


def test_a_refused_connection_is_temporary() -> None:
    with pytest.raises(TemporarySendError, match="SMTP unavailable: ConnectionRefusedError"):
        _plain(free_port()).send(_message())


def test_a_server_that_never_answers_is_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(senders, "SMTP_TIMEOUT_S", 0.3)
    with socket.socket() as silent:  # accepts connections (backlog) and never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(TemporarySendError, match="SMTP unavailable"):
            _plain(port).send(_message())


def test_a_failed_goodbye_after_the_message_was_accepted_is_not_a_failure() -> None:
    # smtplib's context manager raises on a non-221 QUIT: the accepted message would then
    # be retried and arrive twice.
    mailbox = Mailbox(quit_reply="421 4.3.2 closing now")
    with smtp_server(mailbox) as port:
        _plain(port).send(_message())
    assert len(mailbox.messages) == 1


def test_smtplib_refusing_an_unsupported_message_is_permanent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_utf8(self: smtplib.SMTP, *args: object, **kwargs: object) -> None:
        raise smtplib.SMTPNotSupportedError("One or more source or delivery addresses require")

    monkeypatch.setattr(smtplib.SMTP, "send_message", no_utf8)
    with smtp_server(Mailbox()) as port, pytest.raises(PermanentSendError, match="cannot take"):
        _plain(port).send(_message())
