"""Outbox messages, inbox events and payment reviews: every status change and its audit row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.domain.states import (
    INBOX_TRANSITIONS,
    OUTBOX_TRANSITIONS,
    REVIEW_TRANSITIONS,
    InboxEvent,
    InboxStatus,
    OutboxEvent,
    OutboxStatus,
    ReviewEvent,
    ReviewKind,
    ReviewStatus,
)
from renewals.models import InboxEvent as InboxRow
from renewals.models import MerchantEvent, OutboxMessage, PaymentReview
from renewals.transitions._audit import audit_row, write, write_many

log = structlog.get_logger(__name__)


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# ----------------------------------------------------------------------------- outbox


def pending_message(now: datetime, values: dict[str, Any]) -> dict[str, Any]:
    """The outbox row of a newly queued email, pending and due now (the charge's one-statement
    booking in :mod:`renewals.transitions.fast_path` writes the same row)."""
    return {
        **values,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def queue_message(session: Session, *, now: datetime, **values: Any) -> int | None:
    """Queue one email, pending and due now; None when its dedupe key was queued before."""
    new_id = session.execute(
        _insert(session)(OutboxMessage)
        .values(pending_message(now, values))
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxMessage.id)
    ).scalar_one_or_none()
    return int(new_id) if new_id is not None else None


def step_outbox_row(
    row: OutboxMessage | MerchantEvent,
    event: OutboxEvent,
    *,
    now: datetime,
    lease_seconds: int | None,
    retry_at: datetime | None,
    error: str | None,
) -> str:
    """One delivery step on a row of either outbox (emails, merchant events): claimed,
    sent, deferred to ``retry_at`` or rejected; the status it had before."""
    before = row.status
    row.status = OUTBOX_TRANSITIONS.apply(OutboxStatus(before), event).value
    row.lease_expires_at = now + timedelta(seconds=lease_seconds) if lease_seconds else None
    row.next_attempt_at = retry_at
    if event is OutboxEvent.CLAIMED:
        row.attempts += 1
    else:
        row.last_error = error
    if event is OutboxEvent.SENT:
        row.sent_at = now
    return before


def move_outbox(
    session: Session,
    row: OutboxMessage,
    event: OutboxEvent,
    *,
    now: datetime,
    actor: str,
    lease_seconds: int | None = None,
    retry_at: datetime | None = None,
    error: str | None = None,
) -> None:
    before = step_outbox_row(
        row, event, now=now, lease_seconds=lease_seconds, retry_at=retry_at, error=error
    )
    write(
        session,
        now=now,
        actor=actor,
        action=f"email_{event}",
        subscription_id=row.subscription_id,
        renewal_id=row.renewal_id,
        entity="outbox",
        entity_id=row.id,
        from_status=before,
        to_status=row.status,
        details={"kind": row.kind, "attempt": row.attempts},
    )


def expire_sending_leases(session: Session, *, now: datetime) -> list[int]:
    """Messages left ``sending`` by a worker that died go back to ``pending`` (an email can
    at worst be repeated in that window, with the same Message-ID; never lost)."""
    return expire_outbox_leases(session, OutboxMessage, now=now, action="email", entity="outbox")


def expire_outbox_leases(
    session: Session,
    model: type[OutboxMessage] | type[MerchantEvent],
    *,
    now: datetime,
    action: str,
    entity: str,
) -> list[int]:
    """Rows of an outbox (emails, merchant events) left ``sending`` past their lease go back
    to ``pending``, due now, each with its audit row; the ids moved."""
    after = OUTBOX_TRANSITIONS.apply(OutboxStatus.SENDING, OutboxEvent.LEASE_EXPIRED)
    moved = session.execute(
        update(model)
        .where(
            model.status == OutboxStatus.SENDING.value,
            model.lease_expires_at <= now,
        )
        .values(status=after.value, next_attempt_at=now, lease_expires_at=None)
        .returning(model.id, model.subscription_id, model.renewal_id)
        .execution_options(synchronize_session=False)
    ).all()
    write_many(
        session,
        [
            audit_row(
                now=now,
                actor="sweep",
                action=f"{action}_{OutboxEvent.LEASE_EXPIRED}",
                subscription_id=subscription_id,
                renewal_id=renewal_id,
                entity=entity,
                entity_id=row_id,
                from_status=OutboxStatus.SENDING,
                to_status=after,
            )
            for row_id, subscription_id, renewal_id in moved
        ],
    )
    return [row_id for row_id, _, _ in moved]


# ------------------------------------------------------------------------------ inbox


def store_inbox_event(
    session: Session, *, now: datetime, handoff_lease: timedelta, **values: Any
) -> int | None:
    """Store a verified webhook event once (unique event id); None for a duplicate."""
    inbox_id = session.execute(
        _insert(session)(InboxRow)
        .values(
            **values,
            status=InboxStatus.PENDING.value,
            received_at=now,
            lease_expires_at=now + handoff_lease,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(InboxRow.id)
    ).scalar_one_or_none()
    return int(inbox_id) if inbox_id is not None else None


def move_inbox(
    session: Session, row: InboxRow, event: InboxEvent, *, now: datetime, actor: str, outcome: str
) -> None:
    before = row.status
    row.status = INBOX_TRANSITIONS.apply(InboxStatus(before), event).value
    row.outcome = outcome
    row.processed_at = now
    row.lease_expires_at = None
    write(
        session,
        now=now,
        actor=actor,
        action=f"webhook_{event}",
        entity="inbox",
        entity_id=row.id,
        from_status=before,
        to_status=row.status,
        reason=outcome,
        details={"event_id": row.event_id, "type": row.type},
    )


# ---------------------------------------------------------------------------- reviews


def open_review(
    session: Session,
    *,
    kind: ReviewKind,
    now: datetime,
    source: str,
    reason: str,
    payment_intent_id: str | None = None,
    amount: int = 0,
    currency: str = "",
    customer_id: str | None = None,
    renewal_id: int | None = None,
    subscription_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> int | None:
    """Open a review once: per kind and payment, or per kind and renewal when there is no
    payment. Returns its id, or None when it was opened before."""
    key = f"{kind}:{payment_intent_id or f'renewal-{renewal_id}'}"
    review_id = session.execute(
        _insert(session)(PaymentReview)
        .values(
            dedupe_key=key,
            kind=kind.value,
            status=ReviewStatus.OPEN.value,
            payment_intent_id=payment_intent_id,
            amount=amount,
            currency=currency,
            customer_faststar_id=customer_id,
            renewal_id=renewal_id,
            source=source,
            reason=reason,
            details=details,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(PaymentReview.id)
    ).scalar_one_or_none()
    if review_id is None:
        return None
    write(
        session,
        now=now,
        actor=source,
        action=f"review_{kind}",
        subscription_id=subscription_id,
        renewal_id=renewal_id,
        entity="review",
        entity_id=int(review_id),
        to_status=ReviewStatus.OPEN,
        reason=reason,
        details={"payment_intent_id": payment_intent_id} if payment_intent_id else None,
    )
    log.warning("review_opened", kind=str(kind), payment_intent_id=payment_intent_id)
    return int(review_id)


def resolve_review(
    session: Session, review: PaymentReview, *, now: datetime, actor: str, resolution: str
) -> None:
    before = review.status
    review.status = REVIEW_TRANSITIONS.apply(ReviewStatus(before), ReviewEvent.RESOLVED).value
    review.resolved_at = now
    review.resolution = resolution
    write(
        session,
        now=now,
        actor=actor,
        action="review_resolved",
        renewal_id=review.renewal_id,
        entity="review",
        entity_id=review.id,
        from_status=before,
        to_status=review.status,
        reason=resolution,
    )


def resolve_reviews_for_payment(
    session: Session,
    payment_intent_id: str,
    *,
    now: datetime,
    actor: str,
    resolution: str,
    kinds: tuple[ReviewKind, ...] | None = None,
) -> int:
    """Booking is the answer to every open review of that payment (or of those ``kinds``),
    whichever route booked it: they close themselves. Returns how many were closed."""
    query = select(PaymentReview).where(
        PaymentReview.payment_intent_id == payment_intent_id,
        PaymentReview.status == ReviewStatus.OPEN.value,
    )
    if kinds is not None:
        query = query.where(PaymentReview.kind.in_([k.value for k in kinds]))
    reviews = session.scalars(query.with_for_update()).all()
    for review in reviews:
        resolve_review(session, review, now=now, actor=actor, resolution=resolution)
    return len(reviews)
