"""Queueing an email: a row in the same transaction as the state change that calls for it.

The row's ``dedupe_key`` (subscription, period, kind, sequence) is unique and the insert
ignores duplicates, so a redelivered task, a retry or a second sweep can never queue the same
email twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.states import OutboxStatus
from renewals.models import OutboxMessage

PENDING = OutboxStatus.PENDING.value
SENDING = OutboxStatus.SENDING.value
SENT = OutboxStatus.SENT.value
FAILED = OutboxStatus.FAILED.value


def dedupe_key(subscription_id: int, period_start: datetime | None, kind: str, seq: int) -> str:
    period = period_start.strftime("%Y%m%dT%H%M%SZ") if period_start else "-"
    return f"{subscription_id}:{period}:{kind}:{seq}"


def email_values(
    *,
    subscription_id: int,
    renewal_id: int | None,
    period_start: datetime | None,
    kind: str,
    sequence: int,
    recipient: str,
    context: dict[str, Any],
) -> dict[str, Any]:
    """What an email's outbox row says, before the state owner queues it."""
    return {
        "dedupe_key": dedupe_key(subscription_id, period_start, kind, sequence),
        "subscription_id": subscription_id,
        "renewal_id": renewal_id,
        "kind": kind,
        "recipient": recipient,
        "context": context,
    }


def queue_email(
    session: Session,
    *,
    now: datetime,
    subscription_id: int,
    renewal_id: int | None,
    period_start: datetime | None,
    kind: str,
    sequence: int,
    recipient: str,
    context: dict[str, Any],
) -> int | None:
    """Queue one email; returns its id, or None when that email was already queued."""
    return transitions.queue_message(
        session,
        now=now,
        **email_values(
            subscription_id=subscription_id,
            renewal_id=renewal_id,
            period_start=period_start,
            kind=kind,
            sequence=sequence,
            recipient=recipient,
            context=context,
        ),
    )


def message_id_for(session: Session, key: str) -> int | None:
    return session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))
