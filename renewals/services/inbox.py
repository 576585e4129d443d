"""Applying one stored webhook event, once (duplicates were never stored twice).

Only ``payment.succeeded`` moves money in our books; ``payment.refunded`` and ``dispute.*``
are recorded on the renewal they concern (:mod:`renewals.services.adjustments`); other types
are recorded and ignored (our own charge calls already know declines). A payment event is handed to
:func:`renewals.services.payments.apply_reported_payment`. When it cannot be placed yet
(an attempt that could account for it is still in flight, or the event, shaped as FastStar
documents it, names no customer and so waits for the worker to record the payment id), the
event stays pending and is looked at again every minute; after 15 minutes a payment still
unplaced becomes one review, which closes itself once any route books the payment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.matching import ReportedPayment
from renewals.domain.states import InboxEvent as InboxTransition
from renewals.domain.states import InboxStatus
from renewals.domain.work import Work
from renewals.models import InboxEvent
from renewals.models.db import unit_of_work
from renewals.policies import EVENT_RETRY_DELAY, EVENT_WAIT_LIMIT
from renewals.services.adjustments import ADJUSTMENT_TYPES, apply_adjustment_event
from renewals.services.followups import FollowUps
from renewals.services.payments import apply_reported_payment, open_unmatched_review

log = structlog.get_logger(__name__)

ACTOR = "webhook"


def payment_from_event(payload: Mapping[str, Any]) -> ReportedPayment | None:
    """The payment a stored ``payment.*`` event reports, or None if it carries none."""
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    pi, amount, currency = data.get("payment_id"), data.get("amount"), data.get("currency")
    if not (isinstance(pi, str) and isinstance(amount, int) and isinstance(currency, str)):
        return None
    customer, checkout = data.get("customer_id"), data.get("checkout_session_id")
    created = payload.get("created")
    return ReportedPayment(
        payment_intent_id=pi,
        amount=amount,
        currency=currency.upper(),
        customer_id=customer if isinstance(customer, str) else None,
        checkout_session_id=checkout if isinstance(checkout, str) else None,
        created=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
    )


def process_inbox_event(
    engine: Engine, inbox_id: int, *, clock: Callable[[], datetime], settings: Settings
) -> FollowUps:
    """Apply one stored webhook event (see the module docstring)."""
    follow = FollowUps()
    now = clock()
    with unit_of_work(engine) as session:
        event = session.scalar(
            select(InboxEvent).where(InboxEvent.id == inbox_id).with_for_update()
        )
        if event is None or event.status != InboxStatus.PENDING:
            return follow
        if event.type in ADJUSTMENT_TYPES:
            apply_adjustment_event(session, event, now=now, actor=ACTOR)
            return follow
        payment = payment_from_event(event.payload)
        if event.type != "payment.succeeded" or payment is None:
            transitions.move_inbox(
                session,
                event,
                InboxTransition.IGNORED,
                now=now,
                actor=ACTOR,
                outcome="not actionable",
            )
            return follow
        applied = apply_reported_payment(session, payment, source=ACTOR, now=now, settings=settings)
        waited = now - event.received_at
        if applied.wait or (
            applied.review is not None and payment.customer_id is None and waited < EVENT_WAIT_LIMIT
        ):
            # Look again soon: the worker recording its call will tell the payment id.
            event.lease_expires_at = now + EVENT_RETRY_DELAY
            event.outcome = f"waiting: {applied.outcome}"
            log.info("webhook_waiting", inbox_id=inbox_id, reason=applied.outcome)
            return follow
        if applied.review is not None:
            open_unmatched_review(session, payment, applied.review, source=ACTOR, now=now)
        transitions.move_inbox(
            session,
            event,
            InboxTransition.PROCESSED,
            now=now,
            actor=ACTOR,
            outcome=applied.outcome,
        )
        follow.add(Work.DELIVER, applied.receipt_id)
    log.info("webhook_processed", inbox_id=inbox_id, outcome=applied.outcome)
    return follow
