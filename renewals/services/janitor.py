"""The janitor: another look at a charge whose outcome is unknown, on a backoff.

Each look, under lock:

1. a payment FastStar reported earlier and nobody could place (an open ``unmatched``
   review of the same customer, amount and currency) is offered to the matching rule
   again; if it now identifies this attempt alone, it is booked (and its review closes);
2. otherwise, when the operator trusts FastStar's idempotency keys, the first send is
   younger than the retry horizon and the subscription can still be charged, the attempt
   is handed to the charge task to be re-sent with its own key, on the same backoff as the
   looks (each re-send counts as one);
3. otherwise operators are told once (``unknown_escalated`` in the audit trail and
   ``renewals unknown``), and the janitor looks again later (RENEWALS_UNKNOWN_RECHECK_DELAYS).

Nothing here turns unknown into paid or failed by guessing (I3).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.matching import ReportedPayment
from renewals.domain.reconciliation import RecheckDecision
from renewals.domain.states import AttemptStatus, RenewalStatus, ReviewKind, ReviewStatus
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models import ChargeAttempt, PaymentReview
from renewals.models.db import unit_of_work
from renewals.policies import policies
from renewals.services.booking import lock_renewal
from renewals.services.charge_checks import refusal
from renewals.services.followups import FollowUps
from renewals.services.payments import apply_reported_payment
from renewals.transitions import Wake

log = structlog.get_logger(__name__)

ACTOR = "janitor"


def _reported(review: PaymentReview) -> ReportedPayment:
    details = review.details or {}
    created = details.get("created")
    assert review.payment_intent_id is not None  # unmatched reviews are about a payment
    return ReportedPayment(
        payment_intent_id=review.payment_intent_id,
        amount=review.amount,
        currency=review.currency,
        customer_id=review.customer_faststar_id,
        checkout_session_id=details.get("checkout_session_id"),
        created=datetime.fromisoformat(created) if isinstance(created, str) else None,
        subtotal=details.get("subtotal"),
    )


def recheck_unknown(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """One look at the renewal's unknown outcome (see the module docstring)."""
    del client  # FastStar documents no way to look a charge up; only what it reported counts
    follow = FollowUps()
    now = clock()
    policy = policies(settings).unknown_recheck
    with unit_of_work(engine) as session:
        locked = lock_renewal(session, renewal_id)
        if locked is None or locked.renewal.status != RenewalStatus.UNKNOWN:
            return follow
        renewal, sub, customer = locked.renewal, locked.sub, locked.customer
        attempt = session.scalar(
            select(ChargeAttempt).where(
                ChargeAttempt.renewal_id == renewal.id,
                ChargeAttempt.status == AttemptStatus.UNKNOWN,
            )
        )
        if attempt is None:
            return follow
        reported = session.scalars(
            select(PaymentReview)
            .where(PaymentReview.kind == ReviewKind.UNMATCHED.value)
            .where(PaymentReview.status == ReviewStatus.OPEN.value)
            .where(PaymentReview.customer_faststar_id == customer.faststar_id)
            .where(PaymentReview.amount == attempt.amount)
            .where(PaymentReview.currency == attempt.currency)
            .order_by(PaymentReview.id)
        ).all()
        for review in reported:
            applied = apply_reported_payment(
                session, _reported(review), source=ACTOR, now=now, settings=settings
            )
            if applied.review is None and not applied.wait:
                follow.add(Work.DELIVER, applied.receipt_id)
                log.info("unknown_rechecked", renewal_id=renewal.id, outcome=applied.outcome)
                if renewal.status != RenewalStatus.UNKNOWN:
                    return follow
        decision = policy.decide(
            first_sent_at=attempt.created_at, now=now, trust_keys=settings.trust_idempotency_keys
        )
        why_not = refusal(
            sub, locked.card, attempt.amount, attempt.currency, settings.max_charge_amount
        )
        if decision is RecheckDecision.RESEND_SAME_KEY and why_not is None:
            # A resend is a look too: it waits its turn on the backoff and counts as a check.
            # Otherwise an attempt answered 500 on every replay would be re-sent at the first
            # delay for the whole horizon, and each re-send would keep a reported payment
            # that names it waiting for the attempt "still in flight".
            turn = policy.next_check_at(attempt.sent_at or attempt.created_at, attempt.checks)
            if now < turn:
                transitions.reschedule(renewal, Wake(Work.RECHECK, turn), now=now)
                return follow
            attempt.checks += 1
            transitions.reschedule(
                renewal, Wake(Work.CHARGE, now), now=now, lease_seconds=settings.lease_seconds
            )
            follow.add(Work.CHARGE, renewal.id)
            return follow
        attempt.checks += 1
        transitions.note(
            session,
            now=now,
            actor=ACTOR,
            action="unknown_rechecked",
            subscription_id=renewal.subscription_id,
            renewal_id=renewal.id,
            attempt_id=attempt.id,
            details={"check": attempt.checks},
        )
        if attempt.escalated_at is None:
            attempt.escalated_at = now
            reason = (
                f"cannot be re-sent: {why_not}"
                if why_not and decision is RecheckDecision.RESEND_SAME_KEY
                else "no payment identifies it and no same-key retry is allowed"
            )
            transitions.note(
                session,
                now=now,
                actor=ACTOR,
                action="unknown_escalated",
                subscription_id=renewal.subscription_id,
                renewal_id=renewal.id,
                attempt_id=attempt.id,
                reason=reason + "; an operator must reconcile",
            )
            log.warning("unknown_escalated", renewal_id=renewal.id)
        transitions.reschedule(
            renewal, Wake(Work.RECHECK, policy.next_check_at(now, attempt.checks)), now=now
        )
    return follow
