"""Delivering one outbox row: claim it under lock, send outside any transaction, record.

The claim (``pending`` → ``sending``) is what keeps a message delivered three times at once
from sending three emails. Afterwards the row is ``sent`` (with the time), ``failed`` (a
permanent error: bad address or header, 5xx for the message), or ``pending`` again with
``next_attempt_at`` on the backoff below (temporary errors, and unexpected ones, which are
logged); ``attempts`` counts the sends and ``last_error`` keeps the redacted reason.

A worker that dies between sending and recording leaves the row in ``sending``; the sweep
hands it back after its lease, so an email can at worst be repeated in that window (with the
same Message-ID), never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, select

from renewals import metrics, transitions
from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.domain.states import OutboxEvent
from renewals.logs import redact_text
from renewals.models import OutboxMessage
from renewals.models.db import unit_of_work
from renewals.notifications.outbox import PENDING, SENDING, SENT
from renewals.notifications.rendering import InvalidEmail, build_message, render
from renewals.notifications.senders import PermanentSendError, Sender, TemporarySendError

log = structlog.get_logger(__name__)

ACTOR = "worker"

# Temporary failures are retried on this backoff (then every hour): nothing is dropped while
# the SMTP server is down.
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))
MAX_DELAY = timedelta(hours=1)


def retry_delay(attempts: int) -> timedelta:
    return RETRY_DELAYS[attempts - 1] if 0 < attempts <= len(RETRY_DELAYS) else MAX_DELAY


def deliver(
    engine: Engine,
    message_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    sender: Sender,
) -> str:
    """Send one queued email; returns the row's status afterwards."""
    now = clock()
    with unit_of_work(engine) as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
        ).one_or_none()
        if row is None or row.status != PENDING:
            return row.status if row else "missing"
        transitions.move_outbox(
            session,
            row,
            OutboxEvent.CLAIMED,
            now=now,
            actor=ACTOR,
            lease_seconds=settings.lease_seconds,
        )
        kind, context, recipient = row.kind, dict(row.context), row.recipient
        key, attempts, queued_at = row.dedupe_key, row.attempts, row.created_at

    event, error, retry_at = OutboxEvent.SENT, None, None
    try:
        message = build_message(
            render(kind, context, settings),
            recipient=recipient,
            dedupe_key=key,
            queued_at=queued_at,
            settings=settings,
        )
        crash_point("outbox_written_not_delivered")
        sender.send(message)
    except (InvalidEmail, PermanentSendError) as exc:
        event, error = OutboxEvent.REJECTED, str(exc)
    except TemporarySendError as exc:
        event, error = OutboxEvent.DEFERRED, str(exc)
        retry_at = clock() + retry_delay(attempts)
    except Exception as exc:  # a bug (template, sender): record it and retry on the backoff
        log.exception("email_error", message_id=message_id, kind=kind)
        event, error = OutboxEvent.DEFERRED, f"unexpected {type(exc).__name__}: {exc}"
        retry_at = clock() + retry_delay(attempts)

    done = clock()
    with unit_of_work(engine) as session:
        row = session.get_one(OutboxMessage, message_id, with_for_update=True)
        if row.status != SENDING or row.attempts != attempts:
            return row.status  # the sweep reclaimed it meanwhile; the newer claim wins
        transitions.move_outbox(
            session,
            row,
            event,
            now=done,
            actor=ACTOR,
            retry_at=retry_at,
            error=redact_text(error, settings.secrets()) if error else None,
        )
        status = row.status
    metrics.count_email(status)
    if status == SENT:
        log.info("email_sent", message_id=message_id, kind=kind, attempts=attempts)
    else:
        log.warning("email_" + status, message_id=message_id, kind=kind, attempts=attempts)
    return status
