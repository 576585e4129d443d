"""Delivering the outbox in batches: one task, two short transactions and one SMTP session
for up to :data:`BATCH` emails.

1. claim up to ``BATCH`` due ``pending`` rows in one statement (``sending``, under the
   lease; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so batches running at once take
   different rows; on SQLite the transaction's write lock);
2. render and send each, outside any transaction, over one sender session (one SMTP
   connection and login; one file per message for the file sink);
3. record every outcome in one transaction: ``sent``, ``failed`` (permanent), or
   ``pending`` again on the backoff of :func:`~renewals.notifications.delivery.retry_delay`.

The guarantees are the per-message delivery's (:mod:`renewals.notifications.delivery`),
batch for batch: a claimed row is sent by its claimant only; a worker that dies after
sending and before recording leaves its rows ``sending`` until the sweep hands them back
after the lease, so each can be sent once more, with the same Message-ID, never lost. That
window now spans the batch: up to ``BATCH`` emails may be repeated after such a crash.
Sending stops after :data:`SEND_BUDGET` (a slow SMTP server must not hold a batch towards
the task's time limit, which would leave the whole batch to the lease); what was not tried
goes back to ``pending``, due at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine

from renewals import metrics, transitions
from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.domain.states import OutboxEvent
from renewals.logs import redact_text
from renewals.models.db import unit_of_work
from renewals.notifications.delivery import ACTOR, retry_delay
from renewals.notifications.outbox import SENT
from renewals.notifications.rendering import InvalidEmail, build_message, render
from renewals.notifications.senders import (
    PermanentSendError,
    Sender,
    TemporarySendError,
    batch_of,
)
from renewals.transitions import ClaimedMessage, SendOutcome

log = structlog.get_logger(__name__)

# Emails per batch: enough that a burst of receipts costs a few tasks, few enough that a
# crash between sending and recording repeats few emails.
BATCH = 50
# Time to stop starting new sends in a batch, far inside the task's soft time limit.
SEND_BUDGET = timedelta(seconds=20)
_UNTRIED = "not tried: the batch ran out of time"


@dataclass(frozen=True)
class Batch:
    claimed: int
    statuses: dict[int, str] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """As many claimed as a batch takes: more may be due."""
        return self.claimed >= BATCH


def deliver_batch(
    engine: Engine,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    sender: Sender,
    limit: int = BATCH,
) -> Batch:
    """Claim, send and record up to ``limit`` due emails (see the module docstring)."""
    with unit_of_work(engine) as session:
        claimed = transitions.claim_messages(
            session, now=clock(), limit=limit, lease_seconds=settings.lease_seconds, actor=ACTOR
        )
    if not claimed:
        return Batch(0)
    outcomes = _send_all(claimed, clock=clock, settings=settings, sender=sender)
    with unit_of_work(engine) as session:
        statuses = transitions.record_outcomes(session, outcomes, now=clock(), actor=ACTOR)
    _report(outcomes, statuses)
    return Batch(len(claimed), statuses)


def _send_all(
    claimed: list[ClaimedMessage],
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    sender: Sender,
) -> list[SendOutcome]:
    outcomes: list[SendOutcome] = []
    stop_at = time.monotonic() + SEND_BUDGET.total_seconds()
    with batch_of(sender) as session:
        for message in claimed:
            if time.monotonic() > stop_at:
                outcomes.append(
                    SendOutcome(
                        message, OutboxEvent.DEFERRED, "not tried: batch time spent", clock()
                    )
                )
                continue
            outcomes.append(_send_one(message, clock=clock, settings=settings, sender=session))
    return outcomes


def _send_one(
    message: ClaimedMessage,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    sender: Sender,
) -> SendOutcome:
    try:
        email = build_message(
            render(message.kind, message.context, settings),
            recipient=message.recipient,
            dedupe_key=message.dedupe_key,
            queued_at=message.created_at,
            settings=settings,
        )
        # Rows claimed and committed, this email not sent: a crash here leaves the batch
        # `sending` until its lease expires (docs/crash-points.md).
        crash_point("outbox_written_not_delivered")
        sender.send(email)
    except (InvalidEmail, PermanentSendError) as exc:
        return SendOutcome(message, OutboxEvent.REJECTED, _redacted(exc, settings))
    except TemporarySendError as exc:
        retry_at = clock() + retry_delay(message.attempts)
        return SendOutcome(message, OutboxEvent.DEFERRED, _redacted(exc, settings), retry_at)
    except Exception as exc:  # a bug (template, sender): record it and retry on the backoff
        log.exception("email_error", message_id=message.id, kind=message.kind)
        error = redact_text(f"unexpected {type(exc).__name__}: {exc}", settings.secrets())
        return SendOutcome(
            message, OutboxEvent.DEFERRED, error, clock() + retry_delay(message.attempts)
        )
    return SendOutcome(message, OutboxEvent.SENT)


def _redacted(exc: Exception, settings: Settings) -> str:
    return redact_text(str(exc), settings.secrets())


def _report(outcomes: list[SendOutcome], statuses: dict[int, str]) -> None:
    sent = [o.message.id for o in outcomes if statuses.get(o.message.id) == SENT]
    for status in statuses.values():
        metrics.count_email(status)
    for outcome in outcomes:
        after = statuses.get(outcome.message.id)
        if after != SENT:
            log.warning(
                f"email_{after}",
                message_id=outcome.message.id,
                kind=outcome.message.kind,
                attempts=outcome.message.attempts,
            )
    if sent:
        # One line per batch, not per email: a line costs about as much as a small send.
        log.info("emails_sent", count=len(sent), message_ids=sent)
