"""What operators need to look at: unknown outcomes and open reviews."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals.domain.states import AttemptStatus, RenewalStatus, ReviewStatus
from renewals.models import ChargeAttempt, PaymentReview, Renewal


def unknown_renewals(session: Session) -> list[dict[str, Any]]:
    """Every renewal in ``unknown`` with the attempt that made it so, oldest first."""
    rows = session.execute(
        select(Renewal, ChargeAttempt)
        .join(ChargeAttempt, ChargeAttempt.renewal_id == Renewal.id)
        .where(Renewal.status == RenewalStatus.UNKNOWN)
        .where(ChargeAttempt.status == AttemptStatus.UNKNOWN)
        .order_by(ChargeAttempt.sent_at)
    ).all()
    return [
        {
            "renewal_id": renewal.id,
            "subscription_id": renewal.subscription_id,
            "period_start": renewal.period_start.isoformat(),
            "amount": renewal.amount,
            "currency": renewal.currency,
            "attempt": attempt.number,
            "idempotency_key": attempt.idempotency_key,
            "sends": attempt.sends,
            "first_sent_at": attempt.sent_at.isoformat() if attempt.sent_at else None,
            "reason": attempt.error,
            "escalated_at": attempt.escalated_at.isoformat() if attempt.escalated_at else None,
            "checks": attempt.checks,
        }
        for renewal, attempt in rows
    ]


def payments_to_review(session: Session) -> list[dict[str, Any]]:
    """Open reviews: refunds due, unmatched payments, final actions FastStar could not
    confirm; a review closes itself when any route books its payment."""
    rows = session.scalars(
        select(PaymentReview)
        .where(PaymentReview.status == ReviewStatus.OPEN.value)
        .order_by(PaymentReview.created_at, PaymentReview.id)
    ).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "payment_intent_id": r.payment_intent_id,
            "amount": r.amount,
            "currency": r.currency,
            "customer_id": r.customer_faststar_id,
            "renewal_id": r.renewal_id,
            "source": r.source,
            "reason": r.reason,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
