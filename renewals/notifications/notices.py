"""The emails the engine owes its customers, queued in the caller's transaction.

Each function writes one outbox row (see :mod:`renewals.notifications.outbox`) next to the
state change that calls for it and returns its id (None when that email was already queued),
so the task can enqueue delivery after the commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from renewals.domain.dunning import card_expires_before
from renewals.models import Customer, PaymentMethod, Renewal, Subscription
from renewals.notifications.outbox import queue_email

RECEIPT = "receipt"
PAYMENT_FAILED = "payment_failed"
FINAL_FAILURE = "final_failure"
UPCOMING_RENEWAL = "upcoming_renewal"
CARD_EXPIRING = "card_expiring"


def _base(renewal: Renewal) -> dict[str, object]:
    return {
        "amount": renewal.amount,
        "currency": renewal.currency,
        "period_start": renewal.period_start.isoformat(),
        "period_end": renewal.period_end.isoformat(),
    }


def queue_receipt(
    session: Session, renewal: Renewal, customer: Customer, card: PaymentMethod, *, now: datetime
) -> int | None:
    return queue_email(
        session,
        now=now,
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        period_start=renewal.period_start,
        kind=RECEIPT,
        sequence=0,
        recipient=customer.email,
        context={
            **_base(renewal),
            "payment_intent_id": renewal.payment_intent_id,
            "card_brand": card.brand,
            "card_last4": card.last4,
        },
    )


def queue_payment_failed(
    session: Session,
    renewal: Renewal,
    customer: Customer,
    *,
    now: datetime,
    reason: str,
    next_attempt_at: datetime,
) -> int | None:
    # One per decline of the period: the sequence is the decline's number.
    return queue_email(
        session,
        now=now,
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        period_start=renewal.period_start,
        kind=PAYMENT_FAILED,
        sequence=renewal.declines,
        recipient=customer.email,
        context={
            **_base(renewal),
            "reason": reason,
            "next_attempt_at": next_attempt_at.isoformat(),
        },
    )


def queue_final_failure(
    session: Session,
    renewal: Renewal,
    customer: Customer,
    *,
    now: datetime,
    final_action: str,
    reason: str | None,
) -> int | None:
    return queue_email(
        session,
        now=now,
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        period_start=renewal.period_start,
        kind=FINAL_FAILURE,
        sequence=0,
        recipient=customer.email,
        context={**_base(renewal), "final_action": final_action, "reason": reason},
    )


def queue_pre_renewal_notices(
    session: Session,
    sub: Subscription,
    customer: Customer,
    card: PaymentMethod,
    *,
    now: datetime,
    upcoming: bool,
) -> list[int]:
    """The upcoming-renewal notice (when switched on) and, whatever the switch, a warning
    when the saved card will have expired by the renewal date."""
    known = card.exp_month is not None and card.exp_year is not None
    context: dict[str, object] = {
        # The coming period's price: a change asked for through the API included.
        "amount": sub.next_amount,
        "currency": sub.currency,
        "renewal_at": sub.next_renewal_at.isoformat(),
        "card_brand": card.brand,
        "card_last4": card.last4,
        "card_expiry": f"{card.exp_month:02d}/{card.exp_year}" if known else None,
    }
    kinds = [UPCOMING_RENEWAL] if upcoming else []
    # A card whose details are not fetched yet (imported) gets no expiry warning this time.
    if (
        card.exp_month is not None
        and card.exp_year is not None
        and card_expires_before(card.exp_month, card.exp_year, sub.next_renewal_at)
    ):
        kinds.append(CARD_EXPIRING)
    queued = [
        queue_email(
            session,
            now=now,
            subscription_id=sub.id,
            renewal_id=None,
            period_start=sub.next_renewal_at,
            kind=kind,
            sequence=0,
            recipient=customer.email,
            context=context,
        )
        for kind in kinds
    ]
    return [message_id for message_id in queued if message_id is not None]
