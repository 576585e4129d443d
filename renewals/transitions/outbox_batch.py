"""Outbox messages moved in batches: claim many in one statement, record many in one
transaction.

The same machine as :func:`renewals.transitions.messages.move_outbox` (the same columns
change the same way, one audit row per move), set-based: the claim is one
``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT k) RETURNING``, so two
batches running at once split the due rows between them (on SQLite the transaction's
``BEGIN IMMEDIATE`` is the lock), and the sends are recorded with one ``UPDATE`` for the
messages that went out; the rare refusals and deferrals go row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from renewals.domain.states import OUTBOX_TRANSITIONS, OutboxEvent, OutboxStatus
from renewals.models import OutboxMessage
from renewals.transitions._audit import audit_row, write_many
from renewals.transitions.messages import move_outbox

_CLAIMED = OUTBOX_TRANSITIONS.apply(OutboxStatus.PENDING, OutboxEvent.CLAIMED)
_SENT = OUTBOX_TRANSITIONS.apply(OutboxStatus.SENDING, OutboxEvent.SENT)


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """What sending a claimed row needs, read in the claiming statement."""

    id: int
    subscription_id: int
    renewal_id: int | None
    kind: str
    recipient: str
    context: dict[str, Any]
    dedupe_key: str
    created_at: datetime
    attempts: int
    """The claim's attempt number: a record for an older claim is ignored."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    message: ClaimedMessage
    event: OutboxEvent  # SENT, REJECTED or DEFERRED
    error: str | None = None
    retry_at: datetime | None = None


def claim_messages(
    session: Session, *, now: datetime, limit: int, lease_seconds: int, actor: str
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` due pending messages, oldest due first (``pending`` →
    ``sending`` under a lease of ``lease_seconds``, one more attempt each)."""
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            OutboxMessage.next_attempt_at <= now,
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due))
        .values(
            status=_CLAIMED.value,
            attempts=OutboxMessage.attempts + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            next_attempt_at=None,
        )
        .returning(
            OutboxMessage.id,
            OutboxMessage.subscription_id,
            OutboxMessage.renewal_id,
            OutboxMessage.kind,
            OutboxMessage.recipient,
            OutboxMessage.context,
            OutboxMessage.dedupe_key,
            OutboxMessage.created_at,
            OutboxMessage.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    claimed = sorted((ClaimedMessage(*row) for row in rows), key=lambda m: m.id)
    write_many(
        session,
        [
            _audit(m, OutboxEvent.CLAIMED, now, actor, OutboxStatus.PENDING, _CLAIMED)
            for m in claimed
        ],
    )
    return claimed


def record_outcomes(
    session: Session, outcomes: Sequence[SendOutcome], *, now: datetime, actor: str
) -> dict[int, str]:
    """Record what each send did; returns each message's status afterwards. A message
    whose lease expired and that was claimed again meanwhile keeps the newer claim's state
    (its status is returned as it is)."""
    statuses: dict[int, str] = {}
    sent = [o.message for o in outcomes if o.event is OutboxEvent.SENT]
    if sent:
        moved = session.execute(
            update(OutboxMessage)
            .where(
                tuple_(OutboxMessage.id, OutboxMessage.attempts).in_(
                    [(m.id, m.attempts) for m in sent]
                ),
                OutboxMessage.status == OutboxStatus.SENDING.value,
            )
            .values(
                status=_SENT.value,
                sent_at=now,
                lease_expires_at=None,
                next_attempt_at=None,
                last_error=None,
            )
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        ).scalars()
        recorded = set(moved)
        write_many(
            session,
            [
                _audit(m, OutboxEvent.SENT, now, actor, OutboxStatus.SENDING, _SENT)
                for m in sent
                if m.id in recorded
            ],
        )
        statuses |= dict.fromkeys(recorded, _SENT.value)
    others = {o.message.id: o for o in outcomes if o.event is not OutboxEvent.SENT}
    if others:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(sorted(others)))
            .order_by(OutboxMessage.id)
            .with_for_update()
        ).all()
        for row in rows:
            outcome = others[row.id]
            if (
                row.status == OutboxStatus.SENDING.value
                and row.attempts == outcome.message.attempts
            ):
                move_outbox(
                    session,
                    row,
                    outcome.event,
                    now=now,
                    actor=actor,
                    retry_at=outcome.retry_at,
                    error=outcome.error,
                )
            statuses[row.id] = row.status
    missing = [o.message.id for o in outcomes if o.message.id not in statuses]
    if missing:  # sent, but reclaimed meanwhile: report the row as it stands
        current = session.execute(
            select(OutboxMessage.id, OutboxMessage.status).where(OutboxMessage.id.in_(missing))
        ).tuples()
        statuses |= {message_id: status for message_id, status in current}
    return statuses


def _audit(
    message: ClaimedMessage,
    event: OutboxEvent,
    now: datetime,
    actor: str,
    before: OutboxStatus,
    after: OutboxStatus,
) -> dict[str, Any]:
    return audit_row(
        now=now,
        actor=actor,
        action=f"email_{event}",
        subscription_id=message.subscription_id,
        renewal_id=message.renewal_id,
        entity="outbox",
        entity_id=message.id,
        from_status=before,
        to_status=after,
        details={"kind": message.kind, "attempt": message.attempts},
    )
