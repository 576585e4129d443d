"""Starting a charge: check everything under lock, then commit the attempt (step 1 of 3).

:func:`begin_charge` locks the renewal and its subscription in one read that also carries
the halt switch and the renewal's attempts in brief, and re-checks everything: charges not
halted, renewal due for its charge, subscription active or in dunning, card attached, amount
and currency valid, no attempt succeeded or in flight for the period. Then either

* it holds the renewal (a paused subscription: it waits without a job until resumed),
* it refuses the charge before anything reaches FastStar (I4), and the refusal reaches a
  defined end: the renewal fails, the final action applies and the customer is told,
* or it commits a charge attempt with its idempotency key and the renewal in ``charging``,
  and returns the :class:`ChargeOrder` the HTTP call needs.

On PostgreSQL a new attempt is written in one statement
(:func:`renewals.transitions.fast_path.start_new_attempt`); re-sending an open attempt and
every SQLite write go through the ORM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.money import InvalidChargeError, validate_charge
from renewals.domain.states import (
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    SubscriptionStatus,
)
from renewals.domain.work import Work
from renewals.models import ChargeAttempt, Customer, PaymentMethod, Renewal, Subscription
from renewals.notifications.notices import ReceiptFacts, queue_final_failure
from renewals.policies import policies
from renewals.services.booking import Locked
from renewals.services.followups import FollowUps
from renewals.services.halt import halted_subquery
from renewals.services.redelivery import refuse_while_charging
from renewals.transitions import Wake, fast_path

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
    """Everything the HTTP call needs, read under lock in step 1, and what the receipt will
    say should it be paid (so that booking it needs no second read)."""

    renewal_id: int
    attempt_id: int
    subscription_id: int
    customer_id: str  # cus_…
    payment_method_id: str  # pm_…
    amount: int
    currency: str
    idempotency_key: str
    receipt: ReceiptFacts


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


def _hold_while_paused(session: Session, locked: Locked, *, now: datetime) -> Skipped:
    # A pause is not the end of the period: the renewal waits without a job, and resuming
    # the subscription hands it its charge again (services.commands).
    transitions.reschedule(locked.renewal, None, now=now)
    transitions.note(
        session,
        now=now,
        actor=ACTOR,
        action="renewal_held",
        subscription_id=locked.sub.id,
        renewal_id=locked.renewal.id,
        reason="the subscription is paused; resuming it charges this renewal",
    )
    return Skipped("subscription is paused")


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


@dataclass(frozen=True, slots=True)
class _NewAttempt:
    number: int


def _attempt_to_send(session: Session, facts: _ForCharge) -> _NewAttempt | ChargeAttempt | Skipped:
    """A new attempt, or the open one to re-send with its own key."""
    if facts.succeeded:
        return Skipped("an attempt already succeeded for this period")
    if facts.open_attempt_id is None:
        return _NewAttempt(number=facts.attempts + 1)
    # Its renewal is locked, and attempts only change under their renewal's lock.
    attempt = session.get_one(ChargeAttempt, facts.open_attempt_id)
    if attempt.status == AttemptStatus.IN_FLIGHT:
        return Skipped("an attempt is in flight")
    # Not sent, or unknown and handed over by the janitor: the same key either replays the
    # first outcome or executes the charge that never happened; it cannot charge twice.
    return attempt


def _order(
    locked: Locked, attempt_id: int, amount: int, currency: str, idempotency_key: str
) -> ChargeOrder:
    return ChargeOrder(
        renewal_id=locked.renewal.id,
        attempt_id=attempt_id,
        subscription_id=locked.sub.id,
        customer_id=locked.customer.faststar_id,
        payment_method_id=locked.card.faststar_id,
        amount=amount,
        currency=currency,
        idempotency_key=idempotency_key,
        receipt=ReceiptFacts.of(locked.renewal, locked.customer, locked.card),
    )


def _commit_attempt(
    session: Session,
    locked: Locked,
    chosen: _NewAttempt | ChargeAttempt,
    event: RenewalEvent,
    *,
    now: datetime,
    settings: Settings,
) -> ChargeOrder:
    """The attempt in flight and the renewal ``charging``, leased: committed before the call."""
    renewal = locked.renewal
    if isinstance(chosen, _NewAttempt) and fast_path.supported(session):
        key = new_idempotency_key()
        attempt_id = fast_path.start_new_attempt(
            session,
            renewal,
            event,
            number=chosen.number,
            idempotency_key=key,
            # An operator's retry: this send is theirs, outside the dunning schedule.
            requested_by=renewal.retry_requested_by,
            now=now,
            actor=ACTOR,
            lease_seconds=settings.lease_seconds,
        )
        return _order(locked, attempt_id, renewal.amount, renewal.currency, key)
    if isinstance(chosen, _NewAttempt):
        attempt = transitions.new_attempt(
            session, renewal, number=chosen.number, idempotency_key=new_idempotency_key(), now=now
        )
        attempt_event = None
    else:
        attempt, attempt_event = chosen, AttemptEvent.RESENT
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
    return _order(locked, attempt.id, attempt.amount, attempt.currency, attempt.idempotency_key)


def begin_charge(
    session: Session, renewal_id: int, *, now: datetime, settings: Settings
) -> ChargeOrder | Skipped | Refused:
    """Step 1: under lock, decide whether to charge, and write the attempt if so (the caller
    commits)."""
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
        return _hold_while_paused(session, locked, now=now)
    reason = refusal(sub, card, renewal.amount, renewal.currency, settings.max_charge_amount)
    if reason is not None:
        if renewal.status == RenewalStatus.UNKNOWN:
            # The janitor checked this before handing it over; it looks again.
            transitions.reschedule(renewal, Wake(Work.RECHECK, now), now=now)
            return Skipped(f"{reason}; the unknown outcome is left to the janitor")
        return _refuse(session, locked, reason, now=now, settings=settings)
    chosen = _attempt_to_send(session, facts)
    if isinstance(chosen, Skipped):
        return chosen
    return _commit_attempt(session, locked, chosen, event, now=now, settings=settings)
