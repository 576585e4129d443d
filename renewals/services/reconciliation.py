"""Closing the loops the engine leaves open: on-session payments and unknown outcomes.

Sources of truth, all funnelled through :func:`book_on_session_payment` and
:func:`resolve_unknown_as_paid` so that each transition is guarded by the current state and
duplicates or reordering change nothing:

* FastStar webhooks, stored once in the inbox (``InboxEvent``) and processed here;
* polling ``GET /public/checkout/sessions/:id`` for deployments without webhooks;
* an operator (``renewals reconcile``).

A payment that arrives for a period we no longer bill is recorded as ``refund_due``; one
that matches nothing of ours as ``unmatched`` (both in ``payment_reviews``), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.config import Settings
from renewals.domain.states import (
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    attempt_transition,
    can_renewal_transition,
    can_subscription_transition,
    renewal_transition,
    subscription_transition,
)
from renewals.faststar import FastStarClient, FastStarError
from renewals.models import (
    ChargeAttempt,
    CheckoutSessionRecord,
    Customer,
    InboxEvent,
    PaymentReview,
    Renewal,
    Subscription,
)
from renewals.models.db import unit_of_work
from renewals.notifications.notices import queue_receipt
from renewals.services.audit import audit
from renewals.services.charging import FollowUps, lock_renewal_with_card, recheck_at

log = structlog.get_logger(__name__)

PENDING, PROCESSED, IGNORED = "pending", "processed", "ignored"
REFUND_DUE, UNMATCHED = "refund_due", "unmatched"
# An event for a charge whose result is still being recorded is looked at again this late.
DEFER = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment FastStar reports, from a webhook, a polled session or an operator."""

    payment_intent_id: str
    amount: int
    currency: str
    customer_id: str | None = None
    checkout_session_id: str | None = None


def review(
    session: Session,
    payment: Payment,
    *,
    kind: str,
    reason: str,
    now: datetime,
    source: str,
    renewal_id: int | None = None,
) -> None:
    """Record a payment for an operator, once per (kind, payment id)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(PaymentReview)
        .values(
            kind=kind,
            payment_intent_id=payment.payment_intent_id,
            amount=payment.amount,
            currency=payment.currency,
            customer_faststar_id=payment.customer_id,
            renewal_id=renewal_id,
            source=source,
            reason=reason,
            details={"checkout_session_id": payment.checkout_session_id},
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "payment_intent_id"])
    )
    log.warning("payment_for_review", kind=kind, payment_intent_id=payment.payment_intent_id)


def _settle_period(sub: Subscription, renewal: Renewal) -> None:
    if sub.current_period_start is None or renewal.period_start > sub.current_period_start:
        sub.current_period_start = renewal.period_start
        sub.current_period_end = renewal.period_end


def _is_booked(session: Session, payment_intent_id: str) -> bool:
    return (
        session.scalar(
            select(Renewal.id).where(Renewal.payment_intent_id == payment_intent_id).limit(1)
        )
        is not None
    )


def book_on_session_payment(
    session: Session,
    renewal_id: int,
    payment: Payment,
    *,
    now: datetime,
    settings: Settings,
    source: str,
) -> tuple[str, int | None]:
    """The customer paid a renewal's Checkout Session: the renewal succeeds and the
    subscription is active again, or, if that period is no longer billed, a refund is due.
    Returns what happened and the id of a receipt to deliver."""
    locked = lock_renewal_with_card(session, renewal_id)
    if locked is None:
        return "no such renewal", None
    renewal, sub, customer, card = locked
    if renewal.payment_intent_id == payment.payment_intent_id:
        return "already booked", None
    if (payment.amount, payment.currency.upper()) != (renewal.amount, renewal.currency):
        review(
            session,
            payment,
            kind=UNMATCHED,
            now=now,
            source=source,
            renewal_id=renewal.id,
            reason=f"amount {payment.amount} {payment.currency} differs from the renewal's",
        )
        return "amount mismatch", None
    if not can_renewal_transition(renewal.status, RenewalEvent.PAID_ON_SESSION) or not (
        can_subscription_transition(sub.status, SubscriptionEvent.PAID_ON_SESSION)
    ):
        review(
            session,
            payment,
            kind=REFUND_DUE,
            now=now,
            source=source,
            renewal_id=renewal.id,
            reason=f"paid on-session while the renewal was {renewal.status} and the "
            f"subscription {sub.status}",
        )
        audit(
            session,
            now=now,
            actor=source,
            action="refund_due",
            subscription_id=sub.id,
            renewal_id=renewal.id,
            details={"payment_intent_id": payment.payment_intent_id},
        )
        return "refund due", None
    previous = renewal.status
    renewal.status = renewal_transition(renewal.status, RenewalEvent.PAID_ON_SESSION)
    renewal.payment_intent_id = payment.payment_intent_id
    renewal.next_attempt_at = renewal.action_wakeup_at = renewal.checkout_poll_at = None
    renewal.lease_expires_at = None
    renewal.updated_at = now
    _settle_period(sub, renewal)
    audit(
        session,
        now=now,
        actor=source,
        action="paid_on_session",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        from_status=previous,
        to_status=renewal.status,
        details={"payment_intent_id": payment.payment_intent_id},
    )
    new = subscription_transition(sub.status, SubscriptionEvent.PAID_ON_SESSION)
    if new != sub.status:
        audit(
            session,
            now=now,
            actor=source,
            action="subscription_paid_on_session",
            subscription_id=sub.id,
            from_status=sub.status,
            to_status=new,
        )
        sub.status, sub.status_changed_at = new, now
    receipt = (
        queue_receipt(session, renewal, customer, card, now=now) if settings.send_receipts else None
    )
    return "paid on session", receipt


def resolve_unknown_as_paid(
    session: Session,
    renewal_id: int,
    payment: Payment,
    *,
    now: datetime,
    settings: Settings,
    actor: str,
    reason: str,
) -> tuple[str, int | None]:
    """An unknown attempt did charge: book it (I2) with its payment id."""
    locked = lock_renewal_with_card(session, renewal_id)
    if locked is None:
        return "no such renewal", None
    renewal, sub, customer, card = locked
    attempt = session.scalar(
        select(ChargeAttempt).where(
            ChargeAttempt.renewal_id == renewal.id, ChargeAttempt.status == AttemptStatus.UNKNOWN
        )
    )
    if renewal.status != RenewalStatus.UNKNOWN or attempt is None:
        return f"renewal is {renewal.status}", None
    if (payment.amount, payment.currency.upper()) != (attempt.amount, attempt.currency):
        return "amount mismatch", None
    attempt.status = attempt_transition(attempt.status, AttemptEvent.RESOLVED_PAID)
    attempt.payment_intent_id = payment.payment_intent_id
    attempt.finished_at = now
    renewal.status = renewal_transition(renewal.status, RenewalEvent.RESOLVED_PAID)
    renewal.payment_intent_id = payment.payment_intent_id
    renewal.next_attempt_at = None
    renewal.last_error = None
    renewal.updated_at = now
    _settle_period(sub, renewal)
    audit(
        session,
        now=now,
        actor=actor,
        action="unknown_resolved_paid",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        from_status=RenewalStatus.UNKNOWN,
        to_status=renewal.status,
        reason=reason,
        details={"payment_intent_id": payment.payment_intent_id},
    )
    if can_subscription_transition(sub.status, SubscriptionEvent.CHARGE_SUCCEEDED):
        sub.status = subscription_transition(sub.status, SubscriptionEvent.CHARGE_SUCCEEDED)
    receipt = (
        queue_receipt(session, renewal, customer, card, now=now) if settings.send_receipts else None
    )
    return "unknown resolved as paid", receipt


def resolve_unknown_as_not_charged(
    session: Session, renewal_id: int, *, now: datetime, actor: str, reason: str
) -> str:
    """An unknown attempt provably did not charge: close it and schedule a fresh attempt under
    a new key (the old key is never sent again)."""
    renewal = session.scalar(select(Renewal).where(Renewal.id == renewal_id).with_for_update())
    attempt = session.scalar(
        select(ChargeAttempt).where(
            ChargeAttempt.renewal_id == renewal_id, ChargeAttempt.status == AttemptStatus.UNKNOWN
        )
    )
    if renewal is None or renewal.status != RenewalStatus.UNKNOWN or attempt is None:
        return f"renewal is {renewal.status if renewal else 'missing'}"
    # Closed rather than re-opened as "not sent": the next claim creates a new attempt with a
    # new key, and the old key is never sent again.
    attempt.status = attempt_transition(attempt.status, AttemptEvent.CLOSED_NOT_CHARGED)
    attempt.error = f"resolved not charged by {actor}: {reason}"
    attempt.finished_at = now
    renewal.status = renewal_transition(renewal.status, RenewalEvent.RESOLVED_NOT_CHARGED)
    renewal.next_attempt_at = now
    renewal.lease_expires_at = None
    renewal.updated_at = now
    audit(
        session,
        now=now,
        actor=actor,
        action="unknown_resolved_not_charged",
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        from_status=RenewalStatus.UNKNOWN,
        to_status=renewal.status,
        reason=reason,
    )
    return "resolved not charged; a fresh attempt is scheduled"


def _payment_from_event(payload: dict[str, Any]) -> Payment | None:
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    pi, amount, currency = data.get("payment_id"), data.get("amount"), data.get("currency")
    if not (isinstance(pi, str) and isinstance(amount, int) and isinstance(currency, str)):
        return None
    customer, checkout = data.get("customer_id"), data.get("checkout_session_id")
    return Payment(
        pi,
        amount,
        currency.upper(),
        customer if isinstance(customer, str) else None,
        checkout if isinstance(checkout, str) else None,
    )


def _apply_payment(
    session: Session, payment: Payment, *, now: datetime, settings: Settings, source: str
) -> tuple[str, int | None, bool]:
    """Match a reported payment to our books. Returns (outcome, receipt id, defer)."""
    if _is_booked(session, payment.payment_intent_id):
        return "already booked", None, False
    if payment.checkout_session_id:
        renewal_id = session.scalar(
            select(CheckoutSessionRecord.renewal_id).where(
                CheckoutSessionRecord.session_id == payment.checkout_session_id
            )
        )
        if renewal_id is not None:
            outcome, receipt = book_on_session_payment(
                session, renewal_id, payment, now=now, settings=settings, source=source
            )
            return outcome, receipt, False
    elif payment.customer_id:
        candidates = session.execute(
            select(Renewal.id, ChargeAttempt.status)
            .join(ChargeAttempt, ChargeAttempt.renewal_id == Renewal.id)
            .join(Subscription, Subscription.id == Renewal.subscription_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .where(Customer.faststar_id == payment.customer_id)
            .where(ChargeAttempt.amount == payment.amount)
            .where(ChargeAttempt.currency == payment.currency)
            .where(ChargeAttempt.status.in_([AttemptStatus.UNKNOWN, AttemptStatus.IN_FLIGHT]))
        ).all()
        if any(status == AttemptStatus.IN_FLIGHT for _, status in candidates):
            return "a matching charge is still being recorded", None, True
        if len(candidates) == 1:
            outcome, receipt = resolve_unknown_as_paid(
                session,
                candidates[0][0],
                payment,
                now=now,
                settings=settings,
                actor=source,
                reason="FastStar reported the payment",
            )
            return outcome, receipt, False
    review(
        session,
        payment,
        kind=UNMATCHED,
        now=now,
        source=source,
        reason="no renewal of ours matches this payment",
    )
    return "unmatched", None, False


def process_inbox_event(
    engine: Engine, inbox_id: int, *, clock: Callable[[], datetime], settings: Settings
) -> FollowUps:
    """Apply one stored webhook event, once; duplicates were never stored twice."""
    follow = FollowUps()
    now = clock()
    with unit_of_work(engine) as session:
        event = session.scalar(
            select(InboxEvent).where(InboxEvent.id == inbox_id).with_for_update()
        )
        if event is None or event.status != PENDING:
            return follow
        payment = _payment_from_event(event.payload)
        if event.type != "payment.succeeded" or payment is None:
            # Failures need no action here: our own charge calls already know them, and a
            # failed on-session attempt leaves the renewal waiting for the customer.
            event.status, event.outcome, event.processed_at = IGNORED, "not actionable", now
            return follow
        outcome, receipt, defer = _apply_payment(
            session, payment, now=now, settings=settings, source="webhook"
        )
        if defer:
            event.lease_expires_at = now + DEFER
            event.outcome = outcome
            return follow
        event.status, event.outcome, event.processed_at = PROCESSED, outcome, now
        event.lease_expires_at = None
        if receipt is not None:
            follow.deliver_message_ids.append(receipt)
    log.info("webhook_processed", inbox_id=inbox_id, outcome=outcome)
    return follow


def poll_checkout_session(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """Without webhooks: ask FastStar whether the renewal's Checkout Session was paid."""
    follow = FollowUps()
    with unit_of_work(engine) as session:
        renewal = session.get(Renewal, renewal_id)
        if renewal is None or renewal.status != RenewalStatus.REQUIRES_ACTION:
            return follow
        session_id = renewal.checkout_session_id
    if session_id is None:
        return follow
    try:
        checkout = client.get_checkout_session(session_id)
    except FastStarError as exc:
        log.warning("checkout_poll_failed", renewal_id=renewal_id, error=str(exc))
        checkout = None
    now = clock()
    with unit_of_work(engine) as session:
        if checkout is not None and checkout.status == "complete" and checkout.payment_intent_id:
            payment = Payment(
                checkout.payment_intent_id,
                checkout.amount_total or 0,
                (checkout.currency or "").upper(),
                checkout.customer_id,
                checkout.id,
            )
            outcome, receipt = book_on_session_payment(
                session, renewal_id, payment, now=now, settings=settings, source="poll"
            )
            log.info("checkout_polled", renewal_id=renewal_id, outcome=outcome)
            if receipt is not None:
                follow.deliver_message_ids.append(receipt)
            return follow
        renewal = session.get_one(Renewal, renewal_id, with_for_update=True)
        renewal.lease_expires_at = None
        if renewal.status == RenewalStatus.REQUIRES_ACTION:
            renewal.checkout_poll_at = now + timedelta(seconds=settings.checkout_poll_interval)
    return follow


def reconcile_paid(
    engine: Engine,
    renewal_id: int,
    payment_intent_id: str,
    *,
    now: datetime,
    settings: Settings,
    actor: str,
    reason: str,
) -> tuple[str, FollowUps]:
    """Operator: the unknown attempt did charge, as payment ``payment_intent_id``."""
    follow = FollowUps()
    with unit_of_work(engine) as session:
        renewal = session.get(Renewal, renewal_id)
        if renewal is None:
            return "no such renewal", follow
        payment = Payment(payment_intent_id, renewal.amount, renewal.currency)
        outcome, receipt = resolve_unknown_as_paid(
            session, renewal_id, payment, now=now, settings=settings, actor=actor, reason=reason
        )
        if receipt is not None:
            follow.deliver_message_ids.append(receipt)
    return outcome, follow


__all__ = [
    "Payment",
    "book_on_session_payment",
    "poll_checkout_session",
    "process_inbox_event",
    "recheck_unknown",
    "reconcile_paid",
    "resolve_unknown_as_not_charged",
    "resolve_unknown_as_paid",
]


def recheck_unknown(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """The janitor for an unknown outcome when keys are not trusted: settle it from a payment
    FastStar already reported (listed as unmatched when it came), or look again later on the
    recheck backoff, telling operators the first time."""
    del client  # FastStar documents no way to look a charge up; only what it reported counts
    follow = FollowUps()
    now = clock()
    with unit_of_work(engine) as session:
        row = session.execute(
            select(Renewal, ChargeAttempt, Customer)
            .join(ChargeAttempt, ChargeAttempt.renewal_id == Renewal.id)
            .join(Subscription, Subscription.id == Renewal.subscription_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .where(Renewal.id == renewal_id, ChargeAttempt.status == AttemptStatus.UNKNOWN)
            .with_for_update(of=Renewal)
        ).one_or_none()
        if row is None or row[0].status != RenewalStatus.UNKNOWN:
            return follow
        renewal, attempt, customer = row
        reported = session.scalars(
            select(PaymentReview)
            .where(PaymentReview.kind == UNMATCHED, PaymentReview.resolved_at.is_(None))
            .where(PaymentReview.customer_faststar_id == customer.faststar_id)
            .where(PaymentReview.amount == attempt.amount)
            .where(PaymentReview.currency == attempt.currency)
            .where(PaymentReview.created_at >= attempt.created_at)
        ).all()
        if len(reported) == 1:
            match = reported[0]
            payment = Payment(match.payment_intent_id, match.amount, match.currency)
            outcome, receipt = resolve_unknown_as_paid(
                session,
                renewal.id,
                payment,
                now=now,
                settings=settings,
                actor="janitor",
                reason="matched a payment FastStar reported earlier",
            )
            match.resolved_at = now
            follow.deliver_message_ids += [receipt] if receipt is not None else []
            log.info("unknown_rechecked", renewal_id=renewal.id, outcome=outcome)
            return follow
        attempt.checks += 1
        checks = attempt.checks
        audit(
            session,
            now=now,
            actor="janitor",
            action="unknown_rechecked",
            subscription_id=renewal.subscription_id,
            renewal_id=renewal.id,
            attempt_id=attempt.id,
            details={"check": checks},
        )
        if checks == 1:
            audit(
                session,
                now=now,
                actor="janitor",
                action="unknown_escalated",
                subscription_id=renewal.subscription_id,
                renewal_id=renewal.id,
                attempt_id=attempt.id,
                reason="no payment reported for it; an operator must reconcile",
            )
            log.warning("unknown_escalated", renewal_id=renewal.id)
        renewal.next_attempt_at = recheck_at(now, checks, settings)
        renewal.lease_expires_at = None
    return follow
