"""Queueing an email: a row in the same transaction as the state change that calls for it.

The row's ``dedupe_key`` (subscription, period, kind, sequence) is unique and the insert
ignores duplicates, so a redelivered task, a retry or a second sweep can never queue the same
email twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.models import OutboxMessage

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"


def dedupe_key(subscription_id: int, period_start: datetime | None, kind: str, seq: int) -> str:
    period = period_start.strftime("%Y%m%dT%H%M%SZ") if period_start else "-"
    return f"{subscription_id}:{period}:{kind}:{seq}"


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
    key = dedupe_key(subscription_id, period_start, kind, sequence)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(OutboxMessage)
        .values(
            dedupe_key=key,
            subscription_id=subscription_id,
            renewal_id=renewal_id,
            kind=kind,
            recipient=recipient,
            context=context,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxMessage.id)
    )
    new_id = session.execute(statement).scalar_one_or_none()
    if new_id is None:
        return None
    return int(new_id)


def message_id_for(session: Session, key: str) -> int | None:
    return session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))
