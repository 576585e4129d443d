"""Outbox rows through delivery, on SQLite and PostgreSQL: what a row records (status,
attempts, redacted last error, sent time), the file sink, retries on the backoff, rows that
fail for good, a worker dying mid-send, and an SMTP server that stops while emails are due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, update

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models import OutboxMessage
from renewals.models.db import unit_of_work
from renewals.notifications.delivery import RETRY_DELAYS, deliver
from renewals.notifications.outbox import queue_email
from renewals.notifications.senders import SmtpSender, sender_from_url
from renewals.services.sweep import sweep
from tests.support.factories import Clock
from tests.support.inline import run_sweep, view
from tests.support.smtp import Mailbox, free_port, smtp_server


def _queue(
    engine: Engine, clock: Clock, sub_id: int, *, recipient: str = "jane@example.com"
) -> int:
    with unit_of_work(engine) as session:
        message_id = queue_email(
            session,
            now=clock(),
            subscription_id=sub_id,
            renewal_id=None,
            period_start=clock(),
            kind="payment_failed",
            sequence=1,
            recipient=recipient,
            context={
                "amount": 1999,
                "currency": "USD",
                "period_start": clock().isoformat(),
                "reason": "Your card was declined",
                "next_attempt_at": (clock() + timedelta(days=3)).isoformat(),
            },
        )
    assert message_id is not None
    return message_id


def _row(engine: Engine, message_id: int) -> OutboxMessage:
    with unit_of_work(engine) as session:
        return session.get_one(OutboxMessage, message_id)


def _rows(engine: Engine) -> list[OutboxMessage]:
    with unit_of_work(engine) as session:
        return list(session.query(OutboxMessage).order_by(OutboxMessage.id))


def _smtp(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{port}"})


@pytest.fixture
def sub_id(clock: Clock, make_subscription: Callable[..., int]) -> int:
    return make_subscription("success", renews_at=clock.now + timedelta(days=30))


def test_the_file_sink_writes_one_eml_per_message_and_the_row_records_it(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    subscription = make_subscription("success", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)  # charged: the receipt goes to the file sink
    [row] = _rows(engine)
    assert (row.kind, row.status, row.attempts) == ("receipt", "sent", 1)
    assert (row.sent_at, row.last_error, row.next_attempt_at) == (clock.now, None, None)

    directory = Path(urlsplit(settings.mail_url).path)
    [eml] = directory.iterdir()
    assert eml.name == row.dedupe_key.replace(":", "_") + ".eml"
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Receipt: 19.99 USD paid to Example Merchant"
    assert parsed["To"] == row.recipient
    assert parsed["X-Renewals-Key"] == row.dedupe_key
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert view(engine, subscription)["renewals"][0]["payment_intent_id"] in plain.get_content()
    assert "<table" in html.get_content()

    sender = sender_from_url(settings.mail_url)
    assert deliver(engine, row.id, clock=clock, settings=settings, sender=sender) == "sent"
    assert len(list(directory.iterdir())) == 1  # delivered again: nothing new


def test_a_temporary_failure_waits_for_the_backoff_then_sends_once(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sub_id: int,
) -> None:
    mailbox = Mailbox(data_replies=["451 4.3.0 mailbox busy, try later"])
    message_id = _queue(engine, clock, sub_id)
    with smtp_server(mailbox) as port:
        smtp = _smtp(settings, port)
        run_sweep(engine, faststar, smtp, clock)
        row = _row(engine, message_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at == clock.now + RETRY_DELAYS[0]
        assert "451" in (row.last_error or "") and "jane@" not in (row.last_error or "")
        run_sweep(engine, faststar, smtp, clock)  # not due yet
        assert _row(engine, message_id).attempts == 1
        clock.advance(seconds=RETRY_DELAYS[0].total_seconds())
        run_sweep(engine, faststar, smtp, clock)
        clock.advance(hours=2)
        run_sweep(engine, faststar, smtp, clock)
    row = _row(engine, message_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert row.sent_at == clock.now - timedelta(hours=2)
    assert len(mailbox.messages) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchant_name", "Shop\r\nBcc: everyone@example.com"),  # From name and subject
        ("mail_from", "billing@example.com\nBcc: everyone@example.com"),
        ("mail_from", "not an address"),
    ],
)
def test_bad_branding_fails_the_row_once_with_a_clear_reason(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sub_id: int,
    field: str,
    value: str,
) -> None:
    mailbox = Mailbox()
    message_id = _queue(engine, clock, sub_id)
    with smtp_server(mailbox) as port:
        bad = _smtp(settings, port).model_copy(update={field: value})
        run_sweep(engine, faststar, bad, clock)
        clock.advance(days=1)
        run_sweep(engine, faststar, bad, clock)
    row = _row(engine, message_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert "header injection refused" in (row.last_error or "") or "not a valid address" in (
        row.last_error or ""
    )
    assert mailbox.messages == []


class _Flaky:
    """A sender with a bug that shows once: the error is recorded and the row retried."""

    def __init__(self, inner: SmtpSender) -> None:
        self.inner, self.calls = inner, 0

    def send(self, message: EmailMessage) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("unexpected state in the sender")
        self.inner.send(message)


def test_an_unexpected_error_is_recorded_and_retried_not_left_sending(
    engine: Engine, settings: Settings, clock: Clock, sub_id: int
) -> None:
    mailbox = Mailbox()
    message_id = _queue(engine, clock, sub_id)
    with smtp_server(mailbox) as port:
        sender = _Flaky(
            SmtpSender("127.0.0.1", port, implicit_tls=False, username=None, password=None)
        )
        assert (
            deliver(engine, message_id, clock=clock, settings=settings, sender=sender) == "pending"
        )
        row = _row(engine, message_id)
        assert row.last_error == "unexpected RuntimeError: unexpected state in the sender"
        assert row.lease_expires_at is None and row.next_attempt_at is not None
        clock.now = row.next_attempt_at
        assert deliver(engine, message_id, clock=clock, settings=settings, sender=sender) == "sent"
    assert len(mailbox.messages) == 1


class _Killed(BaseException):
    """Stands for the worker process dying in the middle of the SMTP conversation."""


class _DiesOnce:
    def __init__(self) -> None:
        self.died = False

    def send(self, message: EmailMessage) -> None:
        if not self.died:
            self.died = True
            raise _Killed


def test_a_worker_dying_mid_send_gets_its_message_back_after_the_lease(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sub_id: int,
) -> None:
    message_id = _queue(engine, clock, sub_id)
    with pytest.raises(_Killed):
        deliver(engine, message_id, clock=clock, settings=settings, sender=_DiesOnce())
    assert _row(engine, message_id).status == "sending"
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        smtp = _smtp(settings, port)
        clock.advance(seconds=settings.lease_seconds - 1)
        assert run_sweep(engine, faststar, smtp, clock).ids(Work.DELIVER) == []  # still leased
        clock.advance(seconds=1)
        assert run_sweep(engine, faststar, smtp, clock).ids(Work.DELIVER) == [message_id]
        run_sweep(engine, faststar, smtp, clock)
    row = _row(engine, message_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(mailbox.messages) == 1


def test_a_stale_claim_never_overwrites_a_newer_one(
    engine: Engine, settings: Settings, clock: Clock, sub_id: int
) -> None:
    message_id = _queue(engine, clock, sub_id)

    class Overtaken:
        """While this send hangs, the sweep hands the row out again and a newer claim
        takes it (attempts 2, in flight)."""

        def send(self, message: EmailMessage) -> None:
            with unit_of_work(engine) as session:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(status="sending", attempts=OutboxMessage.attempts + 1)
                )

    assert deliver(engine, message_id, clock=clock, settings=settings, sender=Overtaken()) == (
        "sending"
    )
    row = _row(engine, message_id)
    assert (row.status, row.attempts, row.sent_at) == ("sending", 2, None)


def test_smtp_server_stopped_while_emails_are_due_then_every_one_arrives_once(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    mailbox = Mailbox()
    port = free_port()
    smtp = _smtp(settings, port)
    start = clock.now
    first = make_subscription("success", renews_at=start)
    paid = make_subscription("success", renews_at=start + timedelta(hours=1), currency="JPY")
    sca = make_subscription("sca", renews_at=start + timedelta(hours=1))
    with smtp_server(mailbox, port=port):
        run_sweep(engine, faststar, smtp, clock)
        assert len(mailbox.messages) == 1  # the first receipt
    # The server is down while the next renewals are charged and their emails are due.
    clock.now = start + timedelta(hours=1)
    run_sweep(engine, faststar, smtp, clock)
    for _ in range(3):
        clock.advance(minutes=11)
        run_sweep(engine, faststar, smtp, clock)
    waiting = [row for row in _rows(engine) if row.status != "sent"]
    assert sorted(row.kind for row in waiting) == ["action_required", "receipt"]
    assert all(row.status == "pending" and row.attempts == 4 for row in waiting)
    assert all("ConnectionRefusedError" in (row.last_error or "") for row in waiting)
    assert len(mailbox.messages) == 1

    with smtp_server(mailbox, port=port):  # back up
        for _ in range(3):
            clock.advance(hours=1)
            run_sweep(engine, faststar, smtp, clock)
    rows = _rows(engine)
    assert {row.status for row in rows} == {"sent"}
    assert len(mailbox.messages) == len(rows) == 3
    by_recipient = {str(m["To"]): m for m in mailbox.messages}
    assert len(by_recipient) == 3  # one each: nothing lost, nothing twice
    link = view(engine, sca)["renewals"][0]["checkout_url"]
    action = next(m for m in mailbox.messages if m["Subject"].startswith("Action required"))
    plain = action.get_body(("plain",))
    assert plain is not None and link in plain.get_content()
    assert view(engine, first)["status"] == view(engine, paid)["status"] == "active"


def test_a_lost_delivery_message_is_rediscovered_by_the_sweep_after_its_lease(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sub_id: int,
) -> None:
    message_id = _queue(engine, clock, sub_id)
    with unit_of_work(engine) as session:  # a sweep whose deliver_email message is lost
        assert sweep(session, now=clock(), settings=settings).ids(Work.DELIVER) == [message_id]
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        smtp = _smtp(settings, port)
        clock.advance(seconds=settings.lease_seconds - 1)
        assert run_sweep(engine, faststar, smtp, clock).ids(Work.DELIVER) == []  # leased: not twice
        clock.advance(seconds=1)
        assert run_sweep(engine, faststar, smtp, clock).ids(Work.DELIVER) == [message_id]
        clock.advance(hours=1)
        assert run_sweep(engine, faststar, smtp, clock).ids(Work.DELIVER) == []
    row = _row(engine, message_id)
    assert (row.status, row.attempts) == ("sent", 1)
    assert len(mailbox.messages) == 1
