"""Waiting for the customer after a 402: the renewal's one follow-up job.

Whenever it is due (right after the 402, at each reminder, at the final action, and every
RENEWALS_CHECKOUT_POLL_INTERVAL in between for deployments without webhooks), the follow-up:

1. asks FastStar about every Checkout Session ever opened for the renewal (no transaction
   is open meanwhile); a paid one is booked, whichever reminder or deadline was due;
2. at the deadline, applies the final action only once FastStar has answered for every
   session and none was paid; without an answer it waits (and after a day asks an
   operator to look, with a review), but never cancels;
3. otherwise sends what is due: the first "action required" email, or a reminder, each with
   a live link (a session that is missing, closed or about to expire is replaced first);
4. sets the next wake-up: the next reminder, the deadline or the next poll, whichever first;
5. after the final action, keeps asking about sessions still open until they close: a late
   payment is booked (an ``unpaid`` subscription becomes active again) or, after a
   cancellation, listed as a refund due, even when its webhook cannot name the session.

:class:`~renewals.domain.dunning.ActionRequiredPolicy` is the timeline. Sessions are
created with an idempotency key derived from the renewal's attempt key and the number of
sessions so far, so a retried task does not open a second session where FastStar honours
keys (and a second open session where it does not charges nothing by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.matching import ReportedPayment
from renewals.domain.states import RenewalEvent, RenewalStatus, ReviewKind
from renewals.domain.work import Work
from renewals.faststar import CheckoutSession, FastStarClient, FastStarError, LineItem
from renewals.models import ChargeAttempt, CheckoutSessionRecord, Renewal
from renewals.models.db import unit_of_work
from renewals.notifications.notices import queue_final_failure
from renewals.notifications.outbox import queue_email
from renewals.policies import (
    FINAL_ACTION_ANSWER_LIMIT,
    FOLLOW_UP_RETRY_DELAY,
    LATE_WATCH_MARGIN,
    REVIEW_RECHECK,
    policies,
)
from renewals.services.booking import Locked, lock_renewal
from renewals.services.followups import FollowUps
from renewals.services.payments import apply_reported_payment, open_unmatched_review
from renewals.transitions import Wake

log = structlog.get_logger(__name__)

ACTOR = "worker"
ACTION_REQUIRED_EMAIL = "action_required"
REMINDER_EMAIL = "action_reminder"


@dataclass(frozen=True, slots=True)
class _Look:
    """What the first transaction read: enough to call FastStar without a lock held."""

    session_ids: tuple[str, ...]
    current: str | None
    entered: datetime
    reminders_sent: int
    key: str
    amount: int
    currency: str
    price_id: str | None


def _read(session: Session, locked: Locked, now: datetime) -> _Look:
    renewal = locked.renewal
    session_ids = tuple(
        session.scalars(
            select(CheckoutSessionRecord.session_id)
            .where(CheckoutSessionRecord.renewal_id == renewal.id)
            .order_by(CheckoutSessionRecord.id)
        )
    )
    key = session.scalar(
        select(ChargeAttempt.idempotency_key)
        .where(ChargeAttempt.renewal_id == renewal.id)
        .order_by(ChargeAttempt.number.desc())
        .limit(1)
    )
    # Each new session gets a key of its own: an old key would replay an expired session.
    return _Look(
        session_ids=session_ids,
        current=renewal.checkout_session_id,
        entered=renewal.action_required_at or now,
        reminders_sent=renewal.reminders_sent,
        key=f"{key or renewal.id}-checkout-{len(session_ids)}",
        amount=renewal.amount,
        currency=renewal.currency,
        price_id=locked.sub.price_id,
    )


def _create_session(
    client: FastStarClient, look: _Look, settings: Settings, renewal_id: int
) -> CheckoutSession | None:
    """Call FastStar (no transaction is open here); None if it could not be done now."""
    if settings.merchant_of_record:
        if not look.price_id:
            log.error("checkout_needs_price_id", renewal_id=renewal_id)
            return None
        item = LineItem(price_id=look.price_id, quantity=1)
    else:
        item = LineItem(ad_hoc_amount=look.amount, ad_hoc_currency=look.currency)
    try:
        return client.create_checkout_session(
            mode="payment",
            presentation="link",
            line_items=[item],
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            idempotency_key=look.key,
        )
    except FastStarError as exc:
        log.warning("checkout_session_failed", renewal_id=renewal_id, error=str(exc))
        return None


def _ask(
    client: FastStarClient, session_ids: tuple[str, ...], renewal_id: int
) -> tuple[dict[str, CheckoutSession], bool]:
    """FastStar's word on each session, and whether it answered for all of them."""
    answers: dict[str, CheckoutSession] = {}
    for session_id in session_ids:
        try:
            answers[session_id] = client.get_checkout_session(session_id)
        except FastStarError as exc:
            log.warning("checkout_status_unavailable", renewal_id=renewal_id, error=str(exc))
    return answers, len(answers) == len(session_ids)


def _paid(answers: dict[str, CheckoutSession]) -> CheckoutSession | None:
    return next(
        (a for a in answers.values() if a.status == "complete" and a.payment_intent_id), None
    )


def _link_context(renewal: Renewal, settings: Settings, entered: datetime) -> dict[str, object]:
    policy = policies(settings).action_required
    return {
        "amount": renewal.amount,
        "currency": renewal.currency,
        "period_start": renewal.period_start.isoformat(),
        "checkout_url": renewal.checkout_url,
        "checkout_expires_at": (
            renewal.checkout_expires_at.isoformat() if renewal.checkout_expires_at else None
        ),
        "final_action_at": policy.final_action_at(entered).isoformat(),
        "final_action": policy.final_action.value,
    }


def _next_wake(look: _Look, reminders_sent: int, now: datetime, settings: Settings) -> Wake:
    p = policies(settings)
    at = p.action_required.next_wakeup_at(look.entered, reminders_sent)
    if p.checkout_poll is not None:
        at = min(at, now + p.checkout_poll)
    return Wake(Work.FOLLOW_UP, max(at, now))


def _book_paid(
    engine: Engine, renewal_id: int, paid: CheckoutSession, *, now: datetime, settings: Settings
) -> FollowUps:
    follow = FollowUps()
    payment = session_payment(paid)
    with unit_of_work(engine) as session:
        applied = apply_reported_payment(
            session, payment, source="poll", now=now, settings=settings
        )
        if applied.review is not None:
            # A paid session we cannot book (say, another amount): an operator decides, and
            # the renewal is looked at again later rather than expired around the payment.
            open_unmatched_review(session, payment, applied.review, source="poll", now=now)
            renewal = session.get(Renewal, renewal_id, with_for_update=True)
            if renewal is not None and renewal.wake is Work.FOLLOW_UP:
                transitions.reschedule(renewal, Wake(Work.FOLLOW_UP, now + REVIEW_RECHECK), now=now)
        follow.add(Work.DELIVER, applied.receipt_id)
    log.info("checkout_paid", renewal_id=renewal_id, outcome=applied.outcome)
    return follow


def session_payment(paid: CheckoutSession) -> ReportedPayment:
    """A paid Checkout Session as a reported payment (booked by ``apply_reported_payment``)."""
    assert paid.payment_intent_id is not None
    return ReportedPayment(
        payment_intent_id=paid.payment_intent_id,
        amount=paid.amount_total or 0,
        currency=(paid.currency or "").upper(),
        customer_id=paid.customer_id,
        checkout_session_id=paid.id,
        subtotal=paid.amount_subtotal,
    )


def _retry_later(engine: Engine, renewal_id: int, now: datetime) -> None:
    with unit_of_work(engine) as session:
        renewal = session.get(Renewal, renewal_id, with_for_update=True)
        if renewal is not None and renewal.status == RenewalStatus.REQUIRES_ACTION:
            transitions.reschedule(
                renewal, Wake(Work.FOLLOW_UP, now + FOLLOW_UP_RETRY_DELAY), now=now
            )


def _final_action(
    engine: Engine,
    renewal_id: int,
    look: _Look,
    answers: dict[str, CheckoutSession],
    answered: bool,
    *,
    now: datetime,
    settings: Settings,
) -> FollowUps:
    """The deadline: the final action, but only on FastStar's word that nothing was paid.
    Sessions still open after it are watched until they close (see :func:`_late_watch`)."""
    follow = FollowUps()
    final = policies(settings).final_action
    with unit_of_work(engine) as session:
        locked = lock_renewal(session, renewal_id)
        if locked is None or locked.renewal.status != RenewalStatus.REQUIRES_ACTION:
            return follow
        renewal, sub = locked.renewal, locked.sub
        if not answered:
            transitions.reschedule(
                renewal, Wake(Work.FOLLOW_UP, now + FOLLOW_UP_RETRY_DELAY), now=now
            )
            due = policies(settings).action_required.final_action_at(look.entered)
            if now - due >= FINAL_ACTION_ANSWER_LIMIT:
                transitions.open_review(
                    session,
                    kind=ReviewKind.FINAL_ACTION_UNCONFIRMED,
                    now=now,
                    source=ACTOR,
                    reason=(
                        "the final action is due but FastStar has not said for a day whether "
                        "the renewal's checkout sessions were paid; it waits for an answer"
                    ),
                    amount=renewal.amount,
                    currency=renewal.currency,
                    renewal_id=renewal.id,
                    subscription_id=sub.id,
                )
            return follow
        transitions.move_renewal(
            session,
            renewal,
            RenewalEvent.ACTION_EXPIRED,
            now=now,
            actor=ACTOR,
            wake=_late_watch(answers, now, settings),
            reason="authentication_expired",
        )
        transitions.move_subscription(
            session,
            sub,
            final.subscription_event,
            now=now,
            actor=ACTOR,
            reason="authentication_expired",
        )
        follow.add(
            Work.DELIVER,
            queue_final_failure(
                session,
                renewal,
                locked.customer,
                now=now,
                final_action=final.value,
                reason="the payment was not confirmed",
            ),
        )
    return follow


def _late_watch(
    answers: dict[str, CheckoutSession], now: datetime, settings: Settings
) -> Wake | None:
    """After the final action a session may still be open, and a customer may still pay it.
    A payment event shaped as FastStar documents it names no session, so we keep asking
    FastStar about open sessions (on the poll interval, or when the last one expires) until
    none is open: a late payment is then booked (``unpaid``) or listed as a refund due."""
    open_until = [
        datetime.fromtimestamp(a.expires_at, UTC)
        for a in answers.values()
        if a.status == "open"
        if a.expires_at
    ]
    if not any(a.status == "open" for a in answers.values()):
        return None
    poll = policies(settings).checkout_poll
    at = max(open_until) + LATE_WATCH_MARGIN if open_until else now + FOLLOW_UP_RETRY_DELAY
    if poll is not None:
        at = min(at, now + poll)
    return Wake(Work.FOLLOW_UP, at)


def _watch_late_payment(
    engine: Engine, client: FastStarClient, renewal_id: int, *, now: datetime, settings: Settings
) -> FollowUps:
    """A failed renewal whose checkout sessions were still open at the final action."""
    with unit_of_work(engine) as session:
        session_ids = tuple(
            session.scalars(
                select(CheckoutSessionRecord.session_id).where(
                    CheckoutSessionRecord.renewal_id == renewal_id
                )
            )
        )
    answers, answered = _ask(client, session_ids, renewal_id)
    paid = _paid(answers)
    if paid is not None:
        return _book_paid(engine, renewal_id, paid, now=now, settings=settings)
    with unit_of_work(engine) as session:
        renewal = session.get(Renewal, renewal_id, with_for_update=True)
        if renewal is not None and renewal.status == RenewalStatus.FAILED:
            wake = (
                _late_watch(answers, now, settings)
                if answered
                else Wake(Work.FOLLOW_UP, now + FOLLOW_UP_RETRY_DELAY)
            )
            transitions.reschedule(renewal, wake, now=now)
    return FollowUps()


def follow_up_action_required(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """The renewal's follow-up while its customer must authenticate (module docstring)."""
    policy = policies(settings).action_required
    now = clock()
    with unit_of_work(engine) as session:
        locked = lock_renewal(session, renewal_id)
        if locked is None:
            return FollowUps()
        if locked.renewal.status == RenewalStatus.FAILED and locked.renewal.wake is Work.FOLLOW_UP:
            late = True
        elif locked.renewal.status != RenewalStatus.REQUIRES_ACTION:
            return FollowUps()
        else:
            late = False
        look = _read(session, locked, now)
        link_expires = locked.renewal.checkout_expires_at

    if late:
        return _watch_late_payment(engine, client, renewal_id, now=now, settings=settings)
    answers, answered = _ask(client, look.session_ids, renewal_id)
    paid = _paid(answers)
    if paid is not None:
        return _book_paid(engine, renewal_id, paid, now=clock(), settings=settings)
    if policy.is_expired(look.entered, now):
        return _final_action(
            engine, renewal_id, look, answers, answered, now=clock(), settings=settings
        )

    first_email = look.current is None
    due = policy.reminders_due(look.entered, now, already_sent=look.reminders_sent)
    if not first_email and not due:
        with unit_of_work(engine) as session:  # a poll that found nothing paid yet
            renewal = session.get_one(Renewal, renewal_id, with_for_update=True)
            if renewal.status == RenewalStatus.REQUIRES_ACTION:
                transitions.reschedule(
                    renewal, _next_wake(look, renewal.reminders_sent, now, settings), now=now
                )
        return FollowUps()
    current = answers.get(look.current) if look.current else None
    if look.current is not None and current is None:
        _retry_later(engine, renewal_id, now)  # no word on the live link: do not guess
        return FollowUps()
    stale = (
        current is None or current.status != "open" or policy.link_needs_refresh(link_expires, now)
    )
    fresh = _create_session(client, look, settings, renewal_id) if stale else None
    if stale and fresh is None:
        _retry_later(engine, renewal_id, now)
        return FollowUps()
    return _send(engine, renewal_id, look, fresh, due, now=clock(), settings=settings)


def _send(
    engine: Engine,
    renewal_id: int,
    look: _Look,
    fresh: CheckoutSession | None,
    due: tuple[int, ...],
    *,
    now: datetime,
    settings: Settings,
) -> FollowUps:
    """Store a new link, queue the due email, and set the next wake-up: one transaction."""
    follow = FollowUps()
    with unit_of_work(engine) as session:
        locked = lock_renewal(session, renewal_id)
        if locked is None or locked.renewal.status != RenewalStatus.REQUIRES_ACTION:
            return follow
        renewal, sub = locked.renewal, locked.sub
        if (
            renewal.reminders_sent != look.reminders_sent
            or renewal.checkout_session_id != look.current
        ):
            return follow  # another run got here first
        if fresh is not None:
            session.add(
                CheckoutSessionRecord(session_id=fresh.id, renewal_id=renewal.id, created_at=now)
            )
            renewal.checkout_session_id = fresh.id
            renewal.checkout_url = fresh.url
            renewal.checkout_expires_at = (
                datetime.fromtimestamp(fresh.expires_at, UTC) if fresh.expires_at else None
            )
            transitions.note(
                session,
                now=now,
                actor=ACTOR,
                action="checkout_session_opened",
                subscription_id=sub.id,
                renewal_id=renewal.id,
                details={"checkout_session_id": fresh.id},
            )
        context = _link_context(renewal, settings, look.entered)
        if due:
            # After downtime several reminders may be due: one email, all recorded as sent.
            renewal.reminders_sent = due[-1]
            context["last_reminder"] = due[-1] == len(
                policies(settings).action_required.reminder_days
            )
        message_id = queue_email(
            session,
            now=now,
            subscription_id=sub.id,
            renewal_id=renewal.id,
            period_start=renewal.period_start,
            kind=REMINDER_EMAIL if due else ACTION_REQUIRED_EMAIL,
            sequence=due[-1] if due else 0,
            recipient=locked.customer.email,
            context=context,
        )
        follow.add(Work.DELIVER, message_id)
        transitions.reschedule(
            renewal, _next_wake(look, renewal.reminders_sent, now, settings), now=now
        )
    return follow


def renewal_session_ids(session: Session, renewal_id: int) -> tuple[str, ...]:
    """Every Checkout Session opened for the renewal, oldest first."""
    return tuple(
        session.scalars(
            select(CheckoutSessionRecord.session_id)
            .where(CheckoutSessionRecord.renewal_id == renewal_id)
            .order_by(CheckoutSessionRecord.id)
        )
    )


# The follow-up's own asking, for other final actions (an operator's cancel): FastStar's
# word on every session, the paid one if any, and how long open ones are watched after.
ask_sessions = _ask
paid_session = _paid
late_watch = _late_watch

__all__ = [
    "ACTION_REQUIRED_EMAIL",
    "REMINDER_EMAIL",
    "ask_sessions",
    "follow_up_action_required",
    "late_watch",
    "paid_session",
    "renewal_session_ids",
    "session_payment",
]
