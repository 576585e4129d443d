"""The emails the engine owes its customers, queued in the caller's transaction.

Each function writes one outbox row (see :mod:`renewals.notifications.outbox`) next to the
state change that calls for it and returns its id (None when that email was already queued),
so the task can enqueue delivery after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.dunning import card_expires_before
from renewals.models import Customer, PaymentMethod, Renewal, Subscription
from renewals.notifications.outbox import email_values, queue_email

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


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    """What a receipt says besides the payment id, read with the renewal before the charge
    so that the one-statement booking (PostgreSQL) needs no read to queue it."""

    subscription_id: int
    renewal_id: int
    amount: int
    currency: str
    period_start: datetime
    period_end: datetime
    recipient: str = field(repr=False)  # an email address: kept out of reprs and logs
    card_brand: str | None  # None until the card details are fetched (imports)
    card_last4: str | None

    @classmethod
    def of(cls, renewal: Renewal, customer: Customer, card: PaymentMethod) -> ReceiptFacts:
        return cls(
            subscription_id=renewal.subscription_id,
            renewal_id=renewal.id,
            amount=renewal.amount,
            currency=renewal.currency,
            period_start=renewal.period_start,
            period_end=renewal.period_end,
            recipient=customer.email,
            card_brand=card.brand,
            card_last4=card.last4,
        )


def receipt_email(facts: ReceiptFacts, payment_intent_id: str | None) -> dict[str, Any]:
    """The receipt's outbox values (``renewals.transitions.queue_message`` takes them)."""
    return email_values(
        subscription_id=facts.subscription_id,
        renewal_id=facts.renewal_id,
        period_start=facts.period_start,
        kind=RECEIPT,
        sequence=0,
        recipient=facts.recipient,
        context={
            "amount": facts.amount,
            "currency": facts.currency,
            "period_start": facts.period_start.isoformat(),
            "period_end": facts.period_end.isoformat(),
            "payment_intent_id": payment_intent_id,
            "card_brand": facts.card_brand,
            "card_last4": facts.card_last4,
        },
    )


def queue_receipt(
    session: Session, renewal: Renewal, customer: Customer, card: PaymentMethod, *, now: datetime
) -> int | None:
    return transitions.queue_message(
        session,
        now=now,
        **receipt_email(ReceiptFacts.of(renewal, customer, card), renewal.payment_intent_id),
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
