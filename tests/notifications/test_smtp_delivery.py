"""Email delivery through a real SMTP server (aiosmtpd in the test process): plain, STARTTLS,
implicit TLS, permanent refusals, a server that is down, duplicate deliveries, and bad
headers. On SQLite and PostgreSQL."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage

import pytest
import trustme
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import OutboxMessage
from renewals.models.db import unit_of_work
from renewals.notifications.delivery import deliver
from renewals.notifications.outbox import queue_email
from renewals.notifications.senders import SmtpSender
from tests.support.factories import Clock
from tests.support.inline import run_sweep, view
from tests.support.smtp import Mailbox, free_port, smtp_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _queue(
    engine: Engine,
    clock: Clock,
    sub_id: int,
    *,
    recipient: str = "jane@example.com",
    sequence: int = 0,
) -> int:
    with unit_of_work(engine) as session:
        message_id = queue_email(
            session,
            now=clock(),
            subscription_id=sub_id,
            renewal_id=None,
            period_start=clock(),
            kind="action_required",
            sequence=sequence,
            recipient=recipient,
            context={
                "amount": 1999,
                "currency": "USD",
                "period_start": clock().isoformat(),
                "checkout_url": "https://checkout.example/cs_123",
                "checkout_expires_at": None,
                "final_action_at": None,
                "final_action": "canceled",
            },
        )
    assert message_id is not None
    return message_id


def _row(engine: Engine, message_id: int) -> OutboxMessage:
    with unit_of_work(engine) as session:
        return session.get_one(OutboxMessage, message_id)


@pytest.fixture
def subscription(clock: Clock, make_subscription: Callable[..., int]) -> int:
    return make_subscription("success", renews_at=clock.now + timedelta(days=30))


def test_action_required_email_arrives_over_smtp_with_the_stored_link(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
    mailbox: Mailbox,
) -> None:
    with smtp_server(mailbox) as port:
        smtp_settings = settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{port}"})
        sub_id = make_subscription("sca", renews_at=clock.now)
        run_sweep(engine, faststar, smtp_settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    [message] = mailbox.messages
    assert message["Subject"].startswith("Action required")
    assert "19.99 USD" in message["Subject"]
    assert message["To"].addresses[0].addr_spec.endswith("@example.com")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert renewal["checkout_url"] in text.get_content()
    assert f'href="{renewal["checkout_url"]}"' in html.get_content()


def test_starttls_is_used_when_offered(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    subscription: int,
    mailbox: Mailbox,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    message_id = _queue(engine, clock, subscription)
    with smtp_server(mailbox, tls_context=server_tls, require_starttls=True) as port:
        sender = SmtpSender(
            "127.0.0.1",
            port,
            implicit_tls=False,
            username=None,
            password=None,
            ssl_context=client_tls,
        )
        assert deliver(engine, message_id, clock=clock, settings=settings, sender=sender) == "sent"
    assert len(mailbox.messages) == 1


def test_smtps_implicit_tls(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    subscription: int,
    mailbox: Mailbox,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    message_id = _queue(engine, clock, subscription)
    with smtp_server(mailbox, implicit_tls=server_tls) as port:
        sender = SmtpSender(
            "127.0.0.1",
            port,
            implicit_tls=True,
            username=None,
            password=None,
            ssl_context=client_tls,
        )
        assert deliver(engine, message_id, clock=clock, settings=settings, sender=sender) == "sent"
    assert len(mailbox.messages) == 1


def test_a_permanent_refusal_fails_the_row_with_its_reason(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    subscription: int,
    mailbox: Mailbox,
) -> None:
    mailbox.refuse.add("gone@example.com")
    message_id = _queue(engine, clock, subscription, recipient="gone@example.com")
    with smtp_server(mailbox) as port:
        smtp_settings = settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{port}"})
        run_sweep(engine, faststar, smtp_settings, clock)
        clock.advance(hours=2)
        run_sweep(engine, faststar, smtp_settings, clock)
    row = _row(engine, message_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in (row.last_error or "")
    assert "gone@example.com" not in (row.last_error or "")
    assert mailbox.messages == []


def test_nothing_is_lost_while_the_smtp_server_is_down(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    subscription: int,
    mailbox: Mailbox,
) -> None:
    port = free_port()
    smtp_settings = settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{port}"})
    ids = [
        _queue(engine, clock, subscription, recipient=f"r{n}@example.com", sequence=n)
        for n in range(3)
    ]
    run_sweep(engine, faststar, smtp_settings, clock)  # connection refused: temporary
    for message_id in ids:
        row = _row(engine, message_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at is not None and row.next_attempt_at > clock()
    with smtp_server(mailbox, port=port):
        run_sweep(engine, faststar, smtp_settings, clock)  # not due yet: nothing sent
        assert mailbox.messages == []
        clock.advance(minutes=5)
        run_sweep(engine, faststar, smtp_settings, clock)
        clock.advance(hours=1)
        run_sweep(engine, faststar, smtp_settings, clock)
    assert sorted(str(m["To"]) for m in mailbox.messages) == [f"r{n}@example.com" for n in range(3)]
    assert {_row(engine, i).status for i in ids} == {"sent"}


def test_the_send_task_delivered_three_times_at_once_sends_one_email(
    engine: Engine, settings: Settings, clock: Clock, subscription: int, mailbox: Mailbox
) -> None:
    message_id = _queue(engine, clock, subscription)
    results: list[str] = []
    with smtp_server(mailbox) as port:
        sender = SmtpSender("127.0.0.1", port, implicit_tls=False, username=None, password=None)
        barrier = threading.Barrier(3)

        def run() -> None:
            barrier.wait()
            results.append(
                deliver(engine, message_id, clock=clock, settings=settings, sender=sender)
            )

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(mailbox.messages) == 1
    assert results.count("sent") >= 1
    assert _row(engine, message_id).attempts == 1


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        ("jane@example.com\r\nBcc: all@example.com", "line break"),
        ("not-an-address", "not a valid address"),
    ],
)
def test_bad_addresses_fail_once_with_a_clear_reason(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    subscription: int,
    mailbox: Mailbox,
    recipient: str,
    reason: str,
) -> None:
    message_id = _queue(engine, clock, subscription, recipient=recipient)
    with smtp_server(mailbox) as port:
        sender = SmtpSender("127.0.0.1", port, implicit_tls=False, username=None, password=None)
        assert (
            deliver(engine, message_id, clock=clock, settings=settings, sender=sender) == "failed"
        )
    row = _row(engine, message_id)
    assert reason in (row.last_error or "")
    assert row.next_attempt_at is None
    assert mailbox.messages == []


def test_the_same_email_is_queued_once(engine: Engine, clock: Clock, subscription: int) -> None:
    _queue(engine, clock, subscription)
    with pytest.raises(AssertionError):  # _queue insists on a new row; the outbox refuses
        _queue(engine, clock, subscription)
    with unit_of_work(engine) as session:
        assert session.query(OutboxMessage).count() == 1


def test_console_sender_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    from renewals.notifications.senders import sender_from_url

    message = EmailMessage()
    message["Subject"] = "hello"
    message.set_content("body text")
    sender_from_url("console://").send(message)
    out = capsys.readouterr().out
    assert "Subject: hello" in out
    assert "body text" in out
