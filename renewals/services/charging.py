"""Charging one renewal: check under lock, commit the attempt, call FastStar, record.

Three steps, and no transaction is open during the HTTP call:

1. :func:`begin_charge` locks the renewal, re-checks everything (charges not halted,
   renewal due for its charge, subscription active or in dunning, card attached, amount and
   currency valid, no attempt succeeded or in flight for the period), and commits a
   charge attempt with its idempotency key and the renewal in ``charging``. Bad input is
   refused here, before anything reaches FastStar (I4), and the refusal reaches a defined
   end: the renewal fails, the final action applies and the customer is told. A renewal
   of a paused subscription waits without a job until the subscription is resumed.
2. The caller sends the charge.
3. :func:`record_outcome` locks the renewal again and records the classified outcome on the
   attempt, the renewal and the subscription, with any email in the outbox.

If the worker dies between 1 and 3 the renewal stays ``charging`` until its lease expires;
the sweep then marks it ``unknown`` (I3), since nobody can tell whether FastStar saw the call.
Every status change goes through :mod:`renewals.transitions`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

import structlog
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.domain.dunning import FinalActionDue, decide_after_decline
from renewals.domain.money import InvalidChargeError, validate_charge
from renewals.domain.states import (
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    SubscriptionStatus,
)
from renewals.domain.work import Work
from renewals.faststar import (
    AuthenticationRequired,
    ChargeOutcome,
    Declined,
    FastStarClient,
    FastStarConfigurationError,
    NotSent,
    Paid,
    Unknown,
)
from renewals.models import ChargeAttempt, Customer, PaymentMethod, Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.notifications.notices import queue_final_failure, queue_payment_failed
from renewals.policies import policies
from renewals.services.booking import Locked, book
from renewals.services.followups import FollowUps
from renewals.services.halt import halted_subquery
from renewals.services.redelivery import refuse_while_charging
from renewals.transitions import Wake

log = structlog.get_logger(__name__)

ACTOR = "worker"

# Which renewal statuses a charge task may start from, and the transition it makes.
_CLAIM_EVENTS = {
    RenewalStatus.PENDING: RenewalEvent.CLAIMED,
    RenewalStatus.RETRY_SCHEDULED: RenewalEvent.CLAIMED,
    # Only when the janitor handed it over (trusted keys, within the horizon, chargeable):
    # the unknown attempt is re-sent with its own key.
    RenewalStatus.UNKNOWN: RenewalEvent.RESENT_SAME_KEY,
}


@dataclass(frozen=True, slots=True)
class ChargeOrder:
    """Everything the HTTP call needs, read under lock in step 1."""

    renewal_id: int
    attempt_id: int
    subscription_id: int
    customer_id: str  # cus_…
    payment_method_id: str  # pm_…
    amount: int
    currency: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to send: already done, in flight elsewhere, or not due."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Bad input caught before any call (I4): the renewal failed with this reason."""

    reason: str
    follow: FollowUps


def new_idempotency_key() -> str:
    # Random rather than derived from ids: a database restored or recreated from scratch
    # reuses ids, and FastStar would replay an old charge's response for a reused key.
    return f"rnw_{uuid.uuid4().hex}"


def refusal(
    sub: Subscription, card: PaymentMethod, amount: int, currency: str, cap: int
) -> str | None:
    """Why this charge must not be sent at all (I4), or None."""
    if sub.status not in CHARGEABLE_SUBSCRIPTION_STATUSES:
        return f"subscription is {sub.status}"
    if card.detached_at is not None:
        return "payment method is detached"
    try:
        validate_charge(amount, currency, max_amount=cap)
    except InvalidChargeError as exc:
        return f"invalid charge: {exc}"
    return None


def _refuse(
    session: Session, locked: Locked, reason: str, *, now: datetime, settings: Settings
) -> Refused:
    """No dead end: a subscription that stopped being chargeable just leaves the period
    behind; bad input or a detached card fails the period, applies the final action and
    tells the customer, like the end of dunning."""
    renewal, sub = locked.renewal, locked.sub
    follow = FollowUps()
    log.warning("charge_refused", renewal_id=renewal.id, reason=reason)
    renewal.last_error = reason
    if sub.status not in CHARGEABLE_SUBSCRIPTION_STATUSES:
        transitions.move_renewal(
            session,
            renewal,
            RenewalEvent.ABANDONED,
            now=now,
            actor=ACTOR,
            wake=None,
            reason=reason,
        )
        return Refused(reason, follow)
    transitions.move_renewal(
        session, renewal, RenewalEvent.REFUSED, now=now, actor=ACTOR, wake=None, reason=reason
    )
    final = policies(settings).final_action
    transitions.move_subscription(
        session, sub, final.subscription_event, now=now, actor=ACTOR, reason=reason
    )
    message_id = queue_final_failure(
        session, renewal, locked.customer, now=now, final_action=final.value, reason=reason
    )
    follow.add(Work.DELIVER, message_id)
    return Refused(reason, follow)


@dataclass(frozen=True, slots=True)
class _ForCharge:
    """What step 1 reads, in one statement: the renewal and its subscription locked, the
    customer and card, whether charges are halted, and the renewal's attempts in brief."""

    locked: Locked
    halted: bool
    attempts: int
    succeeded: bool
    open_attempt_id: int | None


def _lock_for_charge(session: Session, renewal_id: int) -> _ForCharge | None:
    # Scalar subqueries rather than more round trips: the hot path of every renewal.
    count = (
        select(func.count(ChargeAttempt.id))
        .where(ChargeAttempt.renewal_id == Renewal.id)
        .scalar_subquery()
    )
    succeeded = (
        select(func.count(ChargeAttempt.id))
        .where(ChargeAttempt.renewal_id == Renewal.id)
        .where(ChargeAttempt.status == AttemptStatus.SUCCEEDED)
        .scalar_subquery()
    )
    open_attempt = (
        select(ChargeAttempt.id)
        .where(ChargeAttempt.renewal_id == Renewal.id)
        .where(ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES))
        .scalar_subquery()  # at most one: the partial unique index
    )
    row = session.execute(
        select(
            Renewal,
            Subscription,
            Customer,
            PaymentMethod,
            halted_subquery(),
            count,
            succeeded,
            open_attempt,
        )
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(Renewal.id == renewal_id)
        .with_for_update(of=[Renewal, Subscription])
    ).one_or_none()
    if row is None:
        return None
    return _ForCharge(
        Locked(row[0], row[1], row[2], row[3]),
        halted=bool(row[4]),
        attempts=int(row[5] or 0),
        succeeded=bool(row[6]),
        open_attempt_id=row[7],
    )


def _attempt_to_send(
    session: Session, facts: _ForCharge, *, now: datetime
) -> tuple[ChargeAttempt, AttemptEvent | None] | Skipped:
    """The attempt to send: an open one re-sent with its own key, or a new one."""
    if facts.succeeded:
        return Skipped("an attempt already succeeded for this period")
    if facts.open_attempt_id is None:
        return transitions.new_attempt(
            session,
            facts.locked.renewal,
            number=facts.attempts + 1,
            idempotency_key=new_idempotency_key(),
            now=now,
        ), None
    # Its renewal is locked, and attempts only change under their renewal's lock.
    attempt = session.get_one(ChargeAttempt, facts.open_attempt_id)
    if attempt.status == AttemptStatus.IN_FLIGHT:
        return Skipped("an attempt is in flight")
    # Not sent, or unknown and handed over by the janitor: the same key either replays the
    # first outcome or executes the charge that never happened; it cannot charge twice.
    return attempt, AttemptEvent.RESENT


def begin_charge(
    session: Session, renewal_id: int, *, now: datetime, settings: Settings
) -> ChargeOrder | Skipped | Refused:
    """Step 1: under lock, decide whether to charge, and commit the attempt if so."""
    facts = _lock_for_charge(session, renewal_id)
    if facts is None:
        return Skipped("no such renewal")
    locked = facts.locked
    renewal, sub, card = locked.renewal, locked.sub, locked.card
    if renewal.status == RenewalStatus.CHARGING:
        return Skipped(refuse_while_charging(session, renewal, now=now))
    event = _CLAIM_EVENTS.get(renewal.status)
    if event is None or renewal.wake is not Work.CHARGE:
        return Skipped(f"renewal is {renewal.status}")
    if renewal.wake_at is None or renewal.wake_at > now:
        return Skipped("not due yet")
    if facts.halted:
        # Left as it is: still due, so the sweep claims it again once charges resume.
        return Skipped("charges are halted")
    if sub.status == SubscriptionStatus.PAUSED and renewal.status != RenewalStatus.UNKNOWN:
        # A pause is not the end of the period: the renewal waits without a job, and
        # resuming the subscription hands it its charge again (services.commands).
        transitions.reschedule(renewal, None, now=now)
        transitions.note(
            session,
            now=now,
            actor=ACTOR,
            action="renewal_held",
            subscription_id=sub.id,
            renewal_id=renewal.id,
            reason="the subscription is paused; resuming it charges this renewal",
        )
        return Skipped("subscription is paused")
    reason = refusal(sub, card, renewal.amount, renewal.currency, settings.max_charge_amount)
    if reason is not None:
        if renewal.status == RenewalStatus.UNKNOWN:
            # The janitor checked this before handing it over; it looks again.
            transitions.reschedule(renewal, Wake(Work.RECHECK, now), now=now)
            return Skipped(f"{reason}; the unknown outcome is left to the janitor")
        return _refuse(session, locked, reason, now=now, settings=settings)
    chosen = _attempt_to_send(session, facts, now=now)
    if isinstance(chosen, Skipped):
        return chosen
    attempt, attempt_event = chosen
    if renewal.retry_requested_by is not None:
        # An operator's retry: this send is theirs, outside the dunning schedule.
        attempt.requested_by = renewal.retry_requested_by
        renewal.retry_requested_by = None
    transitions.move_renewal(
        session,
        renewal,
        event,
        now=now,
        actor=ACTOR,
        wake=None,
        lease_seconds=settings.lease_seconds,
        attempt=attempt,
        attempt_event=attempt_event,
        details={
            "attempt_number": attempt.number,
            "send": attempt.sends + (attempt_event is not None),
        },
    )
    return ChargeOrder(
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        subscription_id=sub.id,
        customer_id=locked.customer.faststar_id,
        payment_method_id=card.faststar_id,
        amount=attempt.amount,
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
    )


def _lock_for_outcome(session: Session, order: ChargeOrder) -> tuple[Locked, ChargeAttempt]:
    """The renewal, its subscription and the attempt, locked, with customer and card: one
    statement."""
    row = session.execute(
        select(Renewal, Subscription, ChargeAttempt, Customer, PaymentMethod)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(ChargeAttempt, ChargeAttempt.renewal_id == Renewal.id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(Renewal.id == order.renewal_id, ChargeAttempt.id == order.attempt_id)
        .with_for_update(of=[Renewal, Subscription, ChargeAttempt])
    ).one()
    return Locked(row[0], row[1], row[3], row[4]), row[2]


def _on_declined(
    session: Session,
    locked: Locked,
    attempt: ChargeAttempt,
    outcome: Declined,
    *,
    now: datetime,
    settings: Settings,
    follow: FollowUps,
) -> None:
    renewal, sub = locked.renewal, locked.sub
    attempt.http_status = outcome.http_status
    attempt.decline_code = outcome.reason_code
    attempt.error = outcome.message
    # An operator's retry (``renewals retry``) of a renewal in dunning counts no failure:
    # the schedule computed from the unchanged count is the one it already had.
    counted = attempt.requested_by is None or renewal.declines == 0
    if counted:
        renewal.declines += 1
    renewal.first_declined_at = renewal.first_declined_at or now
    renewal.last_decline_code = outcome.reason_code
    renewal.last_error = outcome.message
    decision = decide_after_decline(
        policies(settings).dunning,
        first_failure_at=renewal.first_declined_at,
        failures_so_far=renewal.declines,
        decline_code=outcome.reason_code,
    )
    details: dict[str, object] = {"decline_code": outcome.reason_code}
    if not counted:
        details["operator_retry"] = attempt.requested_by
    if isinstance(decision, FinalActionDue):
        transitions.move_renewal(
            session,
            renewal,
            RenewalEvent.DECLINED_FINAL,
            now=now,
            actor=ACTOR,
            wake=None,
            attempt=attempt,
            attempt_event=AttemptEvent.DECLINED,
            reason=decision.reason,
            details=details,
        )
        transitions.move_subscription(
            session,
            sub,
            decision.action.subscription_event,
            now=now,
            actor=ACTOR,
            reason=decision.reason,
        )
        follow.add(
            Work.DELIVER,
            queue_final_failure(
                session,
                renewal,
                locked.customer,
                now=now,
                final_action=settings.final_action,
                reason=outcome.message,
            ),
        )
        return
    transitions.move_renewal(
        session,
        renewal,
        RenewalEvent.DECLINED,
        now=now,
        actor=ACTOR,
        wake=Wake(Work.CHARGE, decision.at),
        attempt=attempt,
        attempt_event=AttemptEvent.DECLINED,
        details=details,
    )
    transitions.move_subscription(session, sub, SubscriptionEvent.DECLINED, now=now, actor=ACTOR)
    follow.add(
        Work.DELIVER,
        queue_payment_failed(
            session,
            renewal,
            locked.customer,
            now=now,
            reason=outcome.message,
            next_attempt_at=decision.at,
        ),
    )


def record_outcome(
    session: Session,
    order: ChargeOrder,
    outcome: ChargeOutcome,
    *,
    now: datetime,
    settings: Settings,
) -> FollowUps:
    """Step 3: record what FastStar answered, under lock, in one transaction."""
    follow = FollowUps()
    locked, attempt = _lock_for_outcome(session, order)
    renewal, sub = locked.renewal, locked.sub
    # A slow call may return after the sweep gave its lease up and marked it unknown: a
    # definite "paid" is better than "unknown" and is recorded all the same; anything else
    # is left to reconciliation rather than guessed at.
    late = attempt.status == AttemptStatus.UNKNOWN
    if attempt.status != AttemptStatus.IN_FLIGHT and not (late and isinstance(outcome, Paid)):
        log.warning(
            "outcome_not_recorded",
            attempt_id=attempt.id,
            attempt_status=attempt.status,
            outcome=outcome.kind,
        )
        return follow
    policy = policies(settings)
    match outcome:
        case Paid():
            receipt = book(
                session,
                locked,
                outcome.payment_intent_id,
                renewal_event=RenewalEvent.RESOLVED_PAID if late else RenewalEvent.CHARGE_SUCCEEDED,
                attempt=attempt,
                attempt_event=(
                    AttemptEvent.RESOLVED_PAID if late else AttemptEvent.CHARGE_SUCCEEDED
                ),
                actor=ACTOR,
                now=now,
                settings=settings,
                # On time, no webhook for this payment can have waited long enough to
                # become a review; a late result may meet one.
                close_reviews=late,
            )
            follow.add(Work.DELIVER, receipt)
        case AuthenticationRequired():
            attempt.http_status = outcome.http_status
            renewal.action_required_at = now
            renewal.reminders_sent = 0
            # The follow-up opens the Checkout Session and emails the link right away; it
            # is handed on directly, so the renewal is leased against a second hand-off.
            transitions.move_renewal(
                session,
                renewal,
                RenewalEvent.AUTHENTICATION_REQUIRED,
                now=now,
                actor=ACTOR,
                wake=Wake(Work.FOLLOW_UP, now),
                lease_seconds=settings.lease_seconds,
                attempt=attempt,
                attempt_event=AttemptEvent.AUTHENTICATION_REQUIRED,
            )
            transitions.move_subscription(
                session, sub, SubscriptionEvent.AUTHENTICATION_REQUIRED, now=now, actor=ACTOR
            )
            follow.add(Work.FOLLOW_UP, renewal.id)
        case Declined():
            _on_declined(
                session, locked, attempt, outcome, now=now, settings=settings, follow=follow
            )
        case NotSent():
            attempt.http_status = outcome.http_status
            attempt.error = renewal.last_error = outcome.reason
            at = policy.not_sent.retry_at(now, attempt.sends, retry_after=outcome.retry_after)
            transitions.move_renewal(
                session,
                renewal,
                RenewalEvent.NOT_SENT,
                now=now,
                actor=ACTOR,
                wake=Wake(Work.CHARGE, at),
                attempt=attempt,
                attempt_event=AttemptEvent.NOT_SENT,
                reason=outcome.reason,
            )
        case Unknown():
            attempt.http_status = outcome.http_status
            attempt.error = renewal.last_error = outcome.reason
            # Never turned into paid or failed by guessing: the janitor looks again on
            # its backoff (and, with trusted keys, may re-send the same key).
            transitions.move_renewal(
                session,
                renewal,
                RenewalEvent.OUTCOME_UNKNOWN,
                now=now,
                actor=ACTOR,
                wake=Wake(Work.RECHECK, policy.unknown_recheck.next_check_at(now, 0)),
                attempt=attempt,
                attempt_event=AttemptEvent.OUTCOME_UNKNOWN,
                reason=outcome.reason,
            )
            log.warning("charge_outcome_unknown", renewal_id=renewal.id, reason=outcome.reason)
        case _:
            assert_never(outcome)
    crash_point("response_read_result_uncommitted")
    return follow


def record_configuration_error(
    session: Session, order: ChargeOrder, message: str, *, now: datetime
) -> None:
    """FastStar refused our credentials (401/403): nothing was charged. The attempt is
    recorded as not sent and retried in ten minutes, by which time an operator should have
    fixed the key; the task itself fails loudly."""
    locked, attempt = _lock_for_outcome(session, order)
    if attempt.status != AttemptStatus.IN_FLIGHT:
        return
    reason = f"configuration error: {message}"
    attempt.error = locked.renewal.last_error = reason
    transitions.move_renewal(
        session,
        locked.renewal,
        RenewalEvent.NOT_SENT,
        now=now,
        actor=ACTOR,
        wake=Wake(Work.CHARGE, now + timedelta(minutes=10)),
        attempt=attempt,
        attempt_event=AttemptEvent.NOT_SENT,
        reason=reason,
    )


def charge_renewal(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """Steps 1 to 3 for one renewal. No transaction is open while FastStar is called."""
    with unit_of_work(engine) as session:
        order = begin_charge(session, renewal_id, now=clock(), settings=settings)
    if isinstance(order, Refused):
        return order.follow
    if isinstance(order, Skipped):
        log.debug("charge_skipped", renewal_id=renewal_id, reason=order.reason)
        return FollowUps()
    crash_point("after_attempt_commit")
    try:
        outcome = client.charge_off_session(
            order.customer_id,
            order.payment_method_id,
            order.amount,
            order.currency,
            idempotency_key=order.idempotency_key,
        )
    except FastStarConfigurationError as exc:
        with unit_of_work(engine) as session:
            record_configuration_error(session, order, str(exc), now=clock())
        raise
    with unit_of_work(engine) as session:
        return record_outcome(session, order, outcome, now=clock(), settings=settings)
