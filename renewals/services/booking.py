"""Booking a payment on a renewal: the one place where a period becomes paid.

Whatever learned of the payment (the worker's own charge call, a webhook, a polled Checkout
Session, the janitor, an operator), booking does the same things in the caller's
transaction: the attempt and the renewal take the payment id (unique columns: a payment is
booked once), the renewal succeeds, the paid period becomes the subscription's current one,
the subscription moves on, a receipt is queued, and every open review of that payment is
closed with the route that booked it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import (
    AttemptEvent,
    RenewalEvent,
    SubscriptionEvent,
)
from renewals.models import ChargeAttempt, Customer, PaymentMethod, Renewal, Subscription
from renewals.notifications.notices import queue_receipt


@dataclass(frozen=True, slots=True)
class Locked:
    """A renewal and its subscription, locked, with whom to email and which card."""

    renewal: Renewal
    sub: Subscription
    customer: Customer
    card: PaymentMethod


def lock_renewal(session: Session, renewal_id: int) -> Locked | None:
    """The renewal and its subscription, locked, with the customer and card: one statement."""
    row = session.execute(
        select(Renewal, Subscription, Customer, PaymentMethod)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(Renewal.id == renewal_id)
        .with_for_update(of=[Renewal, Subscription])
    ).one_or_none()
    return Locked(row[0], row[1], row[2], row[3]) if row else None


def book(
    session: Session,
    locked: Locked,
    payment_intent_id: str,
    *,
    renewal_event: RenewalEvent,
    attempt: ChargeAttempt | None = None,
    attempt_event: AttemptEvent | None = None,
    actor: str,
    now: datetime,
    settings: Settings,
    reason: str | None = None,
    close_reviews: bool = True,
) -> int | None:
    """Book ``payment_intent_id`` on the locked renewal; returns a receipt's outbox id.

    ``close_reviews`` may be False only where no review of the payment can exist yet (the
    worker recording its own in-flight call, well inside the time a webhook waits before a
    review is opened); it saves a query on the hot path.
    """
    renewal, sub = locked.renewal, locked.sub
    if attempt is not None:
        attempt.payment_intent_id = payment_intent_id
    renewal.payment_intent_id = payment_intent_id
    renewal.last_error = None
    transitions.move_renewal(
        session,
        renewal,
        renewal_event,
        now=now,
        actor=actor,
        wake=None,
        attempt=attempt,
        attempt_event=attempt_event,
        reason=reason,
        details={"payment_intent_id": payment_intent_id},
    )
    # The paid period becomes the current one (a late, older period never moves it back).
    if sub.current_period_start is None or renewal.period_start > sub.current_period_start:
        sub.current_period_start = renewal.period_start
        sub.current_period_end = renewal.period_end
    on_session = renewal_event is RenewalEvent.PAID_ON_SESSION
    transitions.move_subscription(
        session,
        sub,
        SubscriptionEvent.PAID_ON_SESSION if on_session else SubscriptionEvent.CHARGE_SUCCEEDED,
        now=now,
        actor=actor,
        reason=reason,
        renewal=renewal,
    )
    if close_reviews:
        transitions.resolve_reviews_for_payment(
            session,
            payment_intent_id,
            now=now,
            actor=actor,
            resolution=f"booked on renewal {renewal.id} by {actor}",
        )
    if not settings.send_receipts:
        return None
    return queue_receipt(session, renewal, locked.customer, locked.card, now=now)
