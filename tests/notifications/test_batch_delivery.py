"""The outbox delivered in batches, on SQLite and PostgreSQL, through a real SMTP server:
K emails in one batch arrive once each over one connection; a refusal fails only its
message; a server that is down costs one connection attempt and defers the batch on the
backoff; a worker dying mid-batch gets each message back after the lease, sent at most
once more with the same Message-ID; a record for a stale claim changes nothing; two batches
at once split the due rows."""

from __future__ import annotations

import smtplib
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import OutboxEvent
from renewals.models import AuditEvent, OutboxMessage
from renewals.models.db import unit_of_work
from renewals.notifications import batch as batch_module
from renewals.notifications.batch import deliver_batch
from renewals.notifications.delivery import RETRY_DELAYS
from renewals.notifications.outbox import queue_email
from renewals.notifications.senders import Sender, SmtpSender, sender_from_url
from renewals.services.sweep import claim_due_messages
from tests.support.factories import Clock
from tests.support.smtp import Mailbox

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


class Crash(BaseException):
    """The worker dying: nothing after it runs (BaseException, like SystemExit)."""


@pytest.fixture
def sub_id(clock: Clock, make_subscription: Callable[..., int]) -> int:
    return make_subscription("success", renews_at=clock.now + timedelta(days=30))


def _queue(engine: Engine, clock: Clock, sub_id: int, count: int) -> list[int]:
    ids = []
    with unit_of_work(engine) as session:
        for n in range(count):
            message_id = queue_email(
                session,
                now=clock(),
                subscription_id=sub_id,
                renewal_id=None,
                period_start=clock(),
                kind="payment_failed",
                sequence=n + 1,
                recipient=f"customer{n}@example.com",
                context={
                    "amount": 1999,
                    "currency": "USD",
                    "period_start": clock().isoformat(),
                    "reason": "Your card was declined",
                    "next_attempt_at": (clock() + timedelta(days=3)).isoformat(),
                },
            )
            assert message_id is not None
            ids.append(message_id)
    return ids


def _rows(engine: Engine) -> list[OutboxMessage]:
    with unit_of_work(engine) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _deliver(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    sender: Sender | None = None,
    limit: int = batch_module.BATCH,
) -> batch_module.Batch:
    return deliver_batch(
        engine,
        clock=clock,
        settings=settings,
        sender=sender or sender_from_url(settings.mail_url),
        limit=limit,
    )


def _recipients(mailbox: Mailbox) -> Counter[str]:
    return Counter(str(m["To"]) for m in mailbox.messages)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts SMTP connections opened (one entry each)."""
    opened: list[int] = []
    original = SmtpSender._open

    def counting(self: SmtpSender) -> smtplib.SMTP:
        opened.append(1)
        return original(self)

    monkeypatch.setattr(SmtpSender, "_open", counting)
    return opened


def test_k_emails_in_one_batch_arrive_once_each_over_one_connection(
    engine: Engine,
    smtp_settings: Settings,
    mailbox: Mailbox,
    clock: Clock,
    sub_id: int,
    connections: list[int],
) -> None:
    ids = _queue(engine, clock, sub_id, 5)
    done = _deliver(engine, smtp_settings, clock)
    assert (done.claimed, done.full) == (5, False)
    assert done.statuses == dict.fromkeys(ids, "sent")
    assert _recipients(mailbox) == Counter(f"customer{n}@example.com" for n in range(5))
    assert len(connections) == 1
    assert [(r.status, r.attempts, r.sent_at is not None) for r in _rows(engine)] == [
        ("sent", 1, True)
    ] * 5
    with unit_of_work(engine) as session:
        actions = Counter(
            session.scalars(select(AuditEvent.action).where(AuditEvent.entity == "outbox"))
        )
    assert actions == {"email_claimed": 5, "email_sent": 5}

    again = _deliver(engine, smtp_settings, clock)  # a second batch finds nothing to send
    assert again.claimed == 0
    assert len(mailbox.messages) == 5


def test_a_batch_takes_at_most_its_size_and_says_when_more_may_be_due(
    engine: Engine, settings: Settings, clock: Clock, sub_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "BATCH", 3)  # what .full compares with
    _queue(engine, clock, sub_id, 5)
    first = _deliver(engine, settings, clock, limit=3)
    second = _deliver(engine, settings, clock, limit=3)
    assert (first.claimed, first.full, second.claimed, second.full) == (3, True, 2, False)
    assert not set(first.statuses) & set(second.statuses)
    assert {r.status for r in _rows(engine)} == {"sent"}


def test_a_refused_recipient_fails_alone_and_the_session_goes_on(
    engine: Engine,
    smtp_settings: Settings,
    mailbox: Mailbox,
    clock: Clock,
    sub_id: int,
    connections: list[int],
) -> None:
    ids = _queue(engine, clock, sub_id, 3)
    mailbox.refuse.add("customer1@example.com")
    done = _deliver(engine, smtp_settings, clock)
    assert done.statuses == {ids[0]: "sent", ids[1]: "failed", ids[2]: "sent"}
    assert _recipients(mailbox) == {"customer0@example.com": 1, "customer2@example.com": 1}
    assert len(connections) == 1
    refused = _rows(engine)[1]
    assert "recipient refused" in (refused.last_error or "")
    assert refused.next_attempt_at is None


def test_a_server_that_is_down_is_tried_once_and_the_batch_waits_for_the_backoff(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sub_id: int,
    unused_port: int,
    connections: list[int],
) -> None:
    down = settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{unused_port}"})
    _queue(engine, clock, sub_id, 4)
    done = _deliver(engine, down, clock)
    assert set(done.statuses.values()) == {"pending"}
    assert len(connections) == 1
    rows = _rows(engine)
    assert {(r.status, r.attempts, r.next_attempt_at) for r in rows} == {
        ("pending", 1, clock() + RETRY_DELAYS[0])
    }
    assert all("SMTP unavailable" in (r.last_error or "") for r in rows)
    assert _deliver(engine, down, clock).claimed == 0  # not before the backoff


def test_a_worker_dying_mid_batch_resends_each_email_at_most_once_with_its_message_id(
    engine: Engine,
    smtp_settings: Settings,
    mailbox: Mailbox,
    clock: Clock,
    sub_id: int,
) -> None:
    _queue(engine, clock, sub_id, 3)
    smtp = sender_from_url(smtp_settings.mail_url)
    sent: list[EmailMessage] = []

    class DiesAfterTwo:
        def send(self, message: EmailMessage) -> None:
            if len(sent) == 2:
                raise Crash
            smtp.send(message)
            sent.append(message)

    with pytest.raises(Crash):
        _deliver(engine, smtp_settings, clock, sender=DiesAfterTwo())
    assert [r.status for r in _rows(engine)] == ["sending"] * 3
    assert _deliver(engine, smtp_settings, clock).claimed == 0  # leased: not yet

    clock.advance(seconds=smtp_settings.lease_seconds)
    with unit_of_work(engine) as session:  # the sweep hands the rows back
        claim_due_messages(session, now=clock(), settings=smtp_settings)
    done = _deliver(engine, smtp_settings, clock)
    assert done.claimed == 3
    assert [(r.status, r.attempts) for r in _rows(engine)] == [("sent", 2)] * 3
    assert _deliver(engine, smtp_settings, clock).claimed == 0

    per_recipient = _recipients(mailbox)
    assert per_recipient == {
        "customer0@example.com": 2,  # accepted before the crash, then once more
        "customer1@example.com": 2,
        "customer2@example.com": 1,
    }
    ids = Counter(str(m["Message-ID"]) for m in mailbox.messages)
    assert sorted(ids.values()) == [1, 2, 2]  # a repeat carries the same Message-ID


def test_a_record_for_a_stale_claim_changes_nothing(
    engine: Engine, settings: Settings, clock: Clock, sub_id: int
) -> None:
    [message_id] = _queue(engine, clock, sub_id, 1)
    with unit_of_work(engine) as session:
        [stale] = transitions.claim_messages(
            session, now=clock(), limit=5, lease_seconds=settings.lease_seconds, actor="worker"
        )
    clock.advance(seconds=settings.lease_seconds)
    with unit_of_work(engine) as session:
        claim_due_messages(session, now=clock(), settings=settings)
        [fresh] = transitions.claim_messages(
            session, now=clock(), limit=5, lease_seconds=settings.lease_seconds, actor="worker"
        )
    assert (stale.attempts, fresh.attempts) == (1, 2)
    for late in (
        transitions.SendOutcome(stale, OutboxEvent.SENT),
        transitions.SendOutcome(stale, OutboxEvent.REJECTED, "late"),
    ):
        with unit_of_work(engine) as session:
            statuses = transitions.record_outcomes(session, [late], now=clock(), actor="worker")
        assert statuses == {message_id: "sending"}
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("sending", 2, None)


@POSTGRES_ONLY
def test_two_batches_at_once_claim_different_rows(
    engine: Engine, settings: Settings, clock: Clock, sub_id: int
) -> None:
    ids = _queue(engine, clock, sub_id, 6)
    with unit_of_work(engine) as first, unit_of_work(engine) as second:
        a = transitions.claim_messages(
            first, now=clock(), limit=4, lease_seconds=60, actor="worker"
        )
        # The first transaction still holds its rows: the second skips them, without waiting.
        b = transitions.claim_messages(
            second, now=clock(), limit=4, lease_seconds=60, actor="worker"
        )
    assert [m.id for m in a] == ids[:4]
    assert [m.id for m in b] == ids[4:]
