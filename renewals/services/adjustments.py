"""Refunds and disputes FastStar reports (``payment.refunded``, ``dispute.*``): recorded on
the renewal whose payment they name, with a review for operators and an event for the
merchant's backend.

The renewal is found only by its payment id (unique on renewals): a payment no renewal
carries is never guessed at. Like a payment event, the report waits while the worker may
still be recording that payment (up to ``EVENT_WAIT_LIMIT``), then becomes a review of its
own. A refund of a payment already under a ``refund_due`` review is that review's answer.

Shapes (docs/faststar.md): ``payment.refunded`` is a payment event (``payment_id``,
``amount``, ``currency``, ``status``: ``refunded`` when the whole payment is refunded,
``partially_refunded`` otherwise) and may carry ``amount_refunded``, the total refunded so
far; ``dispute.created|updated|closed`` carry ``dispute_id``, ``payment_id``, ``amount``,
``currency`` and ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.states import InboxEvent as InboxTransition
from renewals.domain.states import ReviewKind
from renewals.models import InboxEvent, Renewal
from renewals.policies import EVENT_RETRY_DELAY, EVENT_WAIT_LIMIT
from renewals.services.booking import lock_renewal

log = structlog.get_logger(__name__)

REFUND_TYPES = frozenset({"payment.refunded"})
DISPUTE_TYPES = frozenset({"dispute.created", "dispute.updated", "dispute.closed"})
ADJUSTMENT_TYPES = REFUND_TYPES | DISPUTE_TYPES


@dataclass(frozen=True, slots=True)
class Reported:
    """A refund or a dispute as one FastStar event reports it."""

    kind: ReviewKind
    payment_id: str
    amount: int
    currency: str
    reported_at: datetime
    # Refunds: the total refunded so far when the event says it, and whether it is whole.
    refunded_total: int | None = None
    full: bool = False
    # Disputes.
    dispute_id: str | None = None
    dispute_status: str | None = None


def reported_from_event(event_type: str, payload: Mapping[str, Any]) -> Reported | None:
    """The refund or dispute a stored event reports, or None if it is not one we can read."""
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    pi, amount, currency = data.get("payment_id"), data.get("amount"), data.get("currency")
    status = data.get("status")
    if not (isinstance(pi, str) and isinstance(currency, str) and isinstance(status, str)):
        return None
    if not isinstance(amount, int) or isinstance(amount, bool):
        return None
    created = payload.get("created")
    reported_at = (
        datetime.fromtimestamp(created, UTC)
        if isinstance(created, int) and not isinstance(created, bool)
        else datetime.now(UTC)
    )
    if event_type in REFUND_TYPES:
        total = data.get("amount_refunded")
        return Reported(
            kind=ReviewKind.REFUNDED,
            reported_at=reported_at,
            refunded_total=total
            if isinstance(total, int) and not isinstance(total, bool)
            else None,
            full=status == "refunded",
            payment_id=pi,
            amount=amount,
            currency=currency.upper(),
        )
    dispute_id = data.get("dispute_id")
    if event_type in DISPUTE_TYPES and isinstance(dispute_id, str):
        return Reported(
            kind=ReviewKind.DISPUTED,
            reported_at=reported_at,
            dispute_id=dispute_id,
            dispute_status=status,
            payment_id=pi,
            amount=amount,
            currency=currency.upper(),
        )
    return None


def apply_adjustment_event(
    session: Session, event: InboxEvent, *, now: datetime, actor: str
) -> str:
    """Apply one stored ``payment.refunded`` or ``dispute.*`` event (locked, pending): it is
    processed, ignored, or left pending to be looked at again. Returns the outcome."""
    reported = reported_from_event(event.type, event.payload)
    if reported is None:
        transitions.move_inbox(
            session, event, InboxTransition.IGNORED, now=now, actor=actor, outcome="unreadable"
        )
        return "unreadable"
    renewal_id = session.scalar(
        select(Renewal.id).where(Renewal.payment_intent_id == reported.payment_id)
    )
    if renewal_id is None:
        outcome = _unmatched(session, event, reported, now=now, actor=actor)
    else:
        outcome = _record(session, event, reported, renewal_id, now=now, actor=actor)
    if outcome.startswith("waiting"):
        event.lease_expires_at = now + EVENT_RETRY_DELAY
        event.outcome = outcome
    else:
        transitions.move_inbox(
            session, event, InboxTransition.PROCESSED, now=now, actor=actor, outcome=outcome
        )
    log.info("faststar_adjustment", type=event.type, outcome=outcome)
    return outcome


def _record(
    session: Session,
    event: InboxEvent,
    reported: Reported,
    renewal_id: int,
    *,
    now: datetime,
    actor: str,
) -> str:
    locked = lock_renewal(session, renewal_id)
    assert locked is not None  # found by its payment id in this transaction
    renewal, sub = locked.renewal, locked.sub
    if reported.kind is ReviewKind.REFUNDED:
        changed = transitions.record_refund(
            session,
            renewal,
            sub,
            refunded_total=reported.refunded_total,
            full=reported.full,
            now=now,
            actor=actor,
            source_event_id=event.event_id,
        )
        what = f"refund of {reported.payment_id} recorded on renewal {renewal.id}"
    else:
        assert reported.dispute_id is not None and reported.dispute_status is not None
        changed = transitions.record_dispute(
            session,
            renewal,
            sub,
            dispute_id=reported.dispute_id,
            dispute_status=reported.dispute_status,
            reported_at=reported.reported_at,
            now=now,
            actor=actor,
            source_event_id=event.event_id,
        )
        what = (
            f"dispute {reported.dispute_id} ({reported.dispute_status}) recorded on renewal "
            f"{renewal.id}"
        )
    if not changed:
        return f"already recorded: {what}"
    transitions.open_review(
        session,
        kind=reported.kind,
        now=now,
        source=actor,
        reason=f"FastStar reported {event.type}: {what}; decide what it means for access",
        payment_intent_id=reported.payment_id,
        amount=reported.amount,
        currency=reported.currency,
        customer_id=locked.customer.faststar_id,
        renewal_id=renewal.id,
        subscription_id=sub.id,
        details={"faststar_event_id": event.event_id},
    )
    return what


def _unmatched(
    session: Session, event: InboxEvent, reported: Reported, *, now: datetime, actor: str
) -> str:
    if reported.kind is ReviewKind.REFUNDED:
        answered = transitions.resolve_reviews_for_payment(
            session,
            reported.payment_id,
            now=now,
            actor=actor,
            resolution="refunded in FastStar",
            kinds=(ReviewKind.REFUND_DUE,),
        )
        if answered:
            return f"refund of {reported.payment_id} answers its refund-due review"
    if now - event.received_at < EVENT_WAIT_LIMIT:
        return f"waiting: no renewal carries {reported.payment_id} yet"
    transitions.open_review(
        session,
        kind=reported.kind,
        now=now,
        source=actor,
        reason=(
            f"FastStar reported {event.type} for {reported.payment_id}, which no renewal "
            "of ours carries"
        ),
        payment_intent_id=reported.payment_id,
        amount=reported.amount,
        currency=reported.currency,
        details={"faststar_event_id": event.event_id},
    )
    return f"unmatched: no renewal carries {reported.payment_id}; review opened"
