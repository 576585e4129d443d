"""A payment FastStar reports, from any source, booked on the one renewal it identifies.

Webhooks, polled Checkout Sessions, the janitor and operators all come here. The facts
(payments already booked, the sessions we opened, the open candidates of that customer)
are loaded under lock and handed to the pure rule :func:`renewals.domain.matching.decide`;
its decision is carried out here, and nothing else decides where a payment goes.

Concurrency: the candidate attempts are locked *before* "is it booked already?" is asked.
On PostgreSQL (READ COMMITTED) a worker committing its own result for one of them holds
that row's lock, so this waits for its commit and then sees the booking, instead of filing
our own payment as unmatched. On SQLite every transaction holds the single write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.matching import (
    AlreadyBooked,
    BookOnAttempt,
    BookOnSession,
    Candidate,
    CandidateKind,
    ReportedPayment,
    Review,
    SessionTarget,
    Wait,
    decide,
)
from renewals.domain.states import (
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    ReviewKind,
    SubscriptionEvent,
    can_renewal_transition,
    can_subscription_transition,
)
from renewals.models import (
    ChargeAttempt,
    CheckoutSessionRecord,
    Customer,
    Renewal,
    Subscription,
)
from renewals.policies import policies
from renewals.services.booking import book, lock_renewal

log = structlog.get_logger(__name__)

# Renewals that wait for their customer to pay a Checkout Session.
_AWAITING = (RenewalStatus.REQUIRES_ACTION, RenewalStatus.RETRY_SCHEDULED)


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of a reported payment."""

    outcome: str
    receipt_id: int | None = None
    # Not decided yet: an attempt that could account for it is still in flight.
    wait: bool = False
    # The decision was a review; the caller may hold it back (see the inbox's wait).
    review: Review | None = None


def _candidates(session: Session, payment: ReportedPayment, now: datetime) -> list[Candidate]:
    """Open attempts (and renewals awaiting their customer) that could account for the
    payment, their attempts locked. Without a customer on the report only same-amount
    attempts still in flight matter (the rule can only wait for them)."""
    amount, currency = payment.amount_before_tax, payment.currency.upper()
    attempts = (
        select(
            Renewal.id,
            ChargeAttempt.id,
            ChargeAttempt.status,
            Customer.faststar_id,
            ChargeAttempt.amount,
            ChargeAttempt.currency,
            ChargeAttempt.created_at,
            ChargeAttempt.sent_at,
        )
        .join(Renewal, Renewal.id == ChargeAttempt.renewal_id)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(ChargeAttempt.status.in_([AttemptStatus.IN_FLIGHT, AttemptStatus.UNKNOWN]))
        .where(ChargeAttempt.amount == amount, ChargeAttempt.currency == currency)
        .with_for_update(of=ChargeAttempt)
    )
    if payment.customer_id is None:
        attempts = attempts.where(ChargeAttempt.status == AttemptStatus.IN_FLIGHT)
    else:
        attempts = attempts.where(Customer.faststar_id == payment.customer_id)
    found = [
        Candidate(
            renewal_id=row[0],
            attempt_id=row[1],
            kind=(
                CandidateKind.IN_FLIGHT
                if row[2] == AttemptStatus.IN_FLIGHT
                else CandidateKind.UNKNOWN
            ),
            customer_id=row[3],
            amount=row[4],
            currency=row[5],
            window_start=row[6],
            window_end=row[7] or row[6],
        )
        for row in session.execute(attempts).tuples()
    ]
    if payment.customer_id is None:
        return found
    awaiting = (
        select(
            Renewal.id, Renewal.amount, Renewal.currency, func.min(CheckoutSessionRecord.created_at)
        )
        .join(CheckoutSessionRecord, CheckoutSessionRecord.renewal_id == Renewal.id)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(Customer.faststar_id == payment.customer_id)
        .where(Renewal.status.in_(_AWAITING))
        .where(Renewal.amount == amount, Renewal.currency == currency)
        .group_by(Renewal.id, Renewal.amount, Renewal.currency)
    )
    found += [
        Candidate(
            renewal_id=renewal_id,
            attempt_id=None,
            kind=CandidateKind.AWAITING_CUSTOMER,
            customer_id=payment.customer_id,
            amount=renewal_amount,
            currency=renewal_currency,
            window_start=first_session,
            window_end=now,
        )
        for renewal_id, renewal_amount, renewal_currency, first_session in session.execute(
            awaiting
        ).tuples()
    ]
    return found


def _booked(session: Session, payment_intent_id: str) -> dict[str, int | None]:
    renewal_id = session.scalar(
        select(Renewal.id).where(Renewal.payment_intent_id == payment_intent_id)
    )
    return {payment_intent_id: renewal_id} if renewal_id is not None else {}


def _sessions(session: Session, checkout_session_id: str | None) -> dict[str, SessionTarget]:
    if checkout_session_id is None:
        return {}
    row = session.execute(
        select(Renewal.id, Renewal.amount, Renewal.currency, Customer.faststar_id)
        .join(CheckoutSessionRecord, CheckoutSessionRecord.renewal_id == Renewal.id)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(CheckoutSessionRecord.session_id == checkout_session_id)
    ).one_or_none()
    return {checkout_session_id: SessionTarget(row[0], row[1], row[2], row[3])} if row else {}


def _paid_renewals(session: Session, renewal_ids: set[int]) -> set[int]:
    """Of these renewals, the ones that already have a payment booked (a second payment
    for one is a double charge to refund, never a second booking)."""
    if not renewal_ids:
        return set()
    return set(
        session.scalars(
            select(Renewal.id)
            .where(Renewal.id.in_(renewal_ids))
            .where(Renewal.payment_intent_id.is_not(None))
        )
    )


def _book_on_session(
    session: Session,
    renewal_id: int,
    payment: ReportedPayment,
    *,
    source: str,
    now: datetime,
    settings: Settings,
) -> Applied:
    """The customer paid one of the renewal's Checkout Sessions: the renewal succeeds and
    the subscription is active again; if that period is no longer billed, a refund is due."""
    locked = lock_renewal(session, renewal_id)
    assert locked is not None  # a session of ours always has its renewal
    renewal, sub = locked.renewal, locked.sub
    if not (
        can_renewal_transition(renewal.status, RenewalEvent.PAID_ON_SESSION)
        and can_subscription_transition(sub.status, SubscriptionEvent.PAID_ON_SESSION)
    ):
        transitions.open_review(
            session,
            kind=ReviewKind.REFUND_DUE,
            now=now,
            source=source,
            reason=(
                f"paid on-session while the renewal was {renewal.status} and the "
                f"subscription {sub.status}"
            ),
            payment_intent_id=payment.payment_intent_id,
            amount=payment.amount,
            currency=payment.currency.upper(),
            customer_id=payment.customer_id,
            renewal_id=renewal.id,
            subscription_id=sub.id,
            details={"checkout_session_id": payment.checkout_session_id},
        )
        # Placed now: a review filed while nothing could tie it to this renewal is answered.
        transitions.resolve_reviews_for_payment(
            session,
            payment.payment_intent_id,
            now=now,
            actor=source,
            resolution=f"refund due on renewal {renewal.id}",
            kinds=(ReviewKind.UNMATCHED,),
        )
        return Applied("refund due")
    receipt = book(
        session,
        locked,
        payment.payment_intent_id,
        renewal_event=RenewalEvent.PAID_ON_SESSION,
        actor=source,
        now=now,
        settings=settings,
        reason=f"checkout session {payment.checkout_session_id} paid",
    )
    return Applied("paid on session", receipt)


def book_unknown_attempt(
    session: Session,
    renewal_id: int,
    payment_intent_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    settings: Settings,
) -> Applied:
    """The renewal's unknown attempt did charge, as ``payment_intent_id``: book it (I2)."""
    locked = lock_renewal(session, renewal_id)
    if locked is None:
        return Applied("no such renewal")
    attempt = session.scalar(
        select(ChargeAttempt)
        .where(ChargeAttempt.renewal_id == renewal_id)
        .where(ChargeAttempt.status == AttemptStatus.UNKNOWN)
        .with_for_update()
    )
    if locked.renewal.status != RenewalStatus.UNKNOWN or attempt is None:
        return Applied(f"renewal is {locked.renewal.status}")
    receipt = book(
        session,
        locked,
        payment_intent_id,
        renewal_event=RenewalEvent.RESOLVED_PAID,
        attempt=attempt,
        attempt_event=AttemptEvent.RESOLVED_PAID,
        actor=actor,
        now=now,
        settings=settings,
        reason=reason,
    )
    return Applied("unknown resolved as paid", receipt)


def apply_reported_payment(
    session: Session, payment: ReportedPayment, *, source: str, now: datetime, settings: Settings
) -> Applied:
    """Decide where a reported payment belongs and carry the decision out (see the module
    docstring). A review decision is returned to the caller unopened only when
    ``payment`` has no customer and the caller wants to wait (the inbox); otherwise it is
    opened here."""
    candidates = _candidates(session, payment, now)  # locks first: see the module docstring
    booked = _booked(session, payment.payment_intent_id)
    sessions = _sessions(session, payment.checkout_session_id)
    decision = decide(
        payment,
        booked=booked,
        paid_renewals=_paid_renewals(
            session,
            {c.renewal_id for c in candidates} | {t.renewal_id for t in sessions.values()},
        )
        if not booked
        else set(),
        sessions=sessions,
        candidates=candidates,
        call_bound=policies(settings).lease,
    )
    match decision:
        case AlreadyBooked():
            return Applied("already booked")
        case BookOnSession():
            return _book_on_session(
                session, decision.renewal_id, payment, source=source, now=now, settings=settings
            )
        case BookOnAttempt():
            return book_unknown_attempt(
                session,
                decision.renewal_id,
                payment.payment_intent_id,
                actor=source,
                reason="FastStar reported the payment; it identifies this attempt alone",
                now=now,
                settings=settings,
            )
        case Wait():
            return Applied(decision.reason, wait=True)
        case Review():
            return Applied(f"{decision.reason}: {decision.detail}", review=decision)
        case _:
            assert_never(decision)


def open_unmatched_review(
    session: Session, payment: ReportedPayment, review: Review, *, source: str, now: datetime
) -> None:
    """File a payment no rule could place for an operator, once."""
    transitions.open_review(
        session,
        kind=ReviewKind.UNMATCHED,
        now=now,
        source=source,
        reason=f"{review.reason}: {review.detail}",
        payment_intent_id=payment.payment_intent_id,
        amount=payment.amount,
        currency=payment.currency.upper(),
        customer_id=payment.customer_id,
        renewal_id=review.renewal_id,
        details={
            "checkout_session_id": payment.checkout_session_id,
            "created": payment.created.isoformat() if payment.created else None,
            "subtotal": payment.subtotal,
            "candidates": list(review.candidates),
        },
    )
