"""Charging one renewal: check under lock, commit the attempt, call FastStar, record.

Three steps, and no transaction is open during the HTTP call:

1. :func:`begin_charge` locks the renewal, re-checks everything (renewal still chargeable,
   subscription active or in dunning, card attached, amount and currency valid, no attempt
   succeeded or open for the period), and commits a charge attempt with its idempotency key
   and the renewal in ``charging``. Bad input is refused here, with an audit row, before
   anything reaches FastStar (I4).
2. The caller sends the charge.
3. :func:`record_outcome` locks the renewal again and records the classified outcome on the
   attempt, the renewal and the subscription, with an audit row and any email in the outbox.

If the worker dies between 1 and 3 the renewal stays ``charging`` until its lease expires;
the sweep then marks it ``unknown`` (I3), since nobody can tell whether FastStar saw the call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals.config import Settings
from renewals.domain.dunning import (
    ActionRequiredPolicy,
    DunningPolicy,
    FinalAction,
    FinalActionDue,
    NotSentBackoff,
    decide_after_decline,
    parse_day_list,
)
from renewals.domain.money import InvalidChargeError, validate_charge
from renewals.domain.states import (
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    attempt_transition,
    can_subscription_transition,
    renewal_transition,
    subscription_transition,
)
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
from renewals.notifications.notices import (
    queue_final_failure,
    queue_payment_failed,
    queue_receipt,
)
from renewals.services.audit import audit

log = structlog.get_logger(__name__)

ACTOR = "worker"

# Which renewal statuses a charge task may start from, and the transition it makes.
_CLAIM_EVENTS = {
    RenewalStatus.PENDING: RenewalEvent.CLAIMED,
    RenewalStatus.RETRY_SCHEDULED: RenewalEvent.CLAIMED,
    # Only with RENEWALS_TRUST_IDEMPOTENCY_KEYS: re-send the unknown attempt's own key.
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


@dataclass
class FollowUps:
    """Tasks to enqueue once the transaction has committed."""

    checkout_renewal_ids: list[int] = field(default_factory=list)
    deliver_message_ids: list[int] = field(default_factory=list)


def new_idempotency_key() -> str:
    # Random rather than derived from ids: a database restored or recreated from scratch
    # reuses ids, and FastStar would replay an old charge's response for a reused key.
    return f"rnw_{uuid.uuid4().hex}"


def lock_renewal_with_card(
    session: Session, renewal_id: int
) -> tuple[Renewal, Subscription, Customer, PaymentMethod] | None:
    """The renewal and its subscription, locked, with the customer and card: one statement."""
    row = session.execute(
        select(Renewal, Subscription, Customer, PaymentMethod)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(Renewal.id == renewal_id)
        .with_for_update(of=[Renewal, Subscription])
    ).one_or_none()
    return (row[0], row[1], row[2], row[3]) if row else None


@dataclass(frozen=True, slots=True)
class _ForOutcome:
    renewal: Renewal
    sub: Subscription
    attempt: ChargeAttempt
    customer: Customer  # whom the email about the outcome goes to
    card: PaymentMethod


def _lock_for_outcome(session: Session, order: ChargeOrder) -> _ForOutcome:
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
    return _ForOutcome(row[0], row[1], row[2], row[3], row[4])


def _refuse(
    session: Session, renewal: Renewal, sub: Subscription, reason: str, *, now: datetime
) -> Refused:
    audit(
        session,
        now=now,
        actor=ACTOR,
        action="charge_refused",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        from_status=renewal.status,
        to_status=RenewalStatus.FAILED,
        reason=reason,
    )
    renewal.status = renewal_transition(renewal.status, RenewalEvent.ABANDONED)
    renewal.last_error = reason
    renewal.lease_expires_at = None
    renewal.next_attempt_at = None
    renewal.updated_at = now
    log.warning("charge_refused", renewal_id=renewal.id, reason=reason)
    return Refused(reason)


def _refusal(
    renewal: Renewal, sub: Subscription, card: PaymentMethod, settings: Settings
) -> str | None:
    """Why this renewal must not be charged at all (I4), or None."""
    if sub.status not in CHARGEABLE_SUBSCRIPTION_STATUSES:
        return f"subscription is {sub.status}"
    if card.detached_at is not None:
        return "payment method is detached"
    try:
        validate_charge(renewal.amount, renewal.currency, max_amount=settings.max_charge_amount)
    except InvalidChargeError as exc:
        return f"invalid charge: {exc}"
    return None


def recheck_at(now: datetime, checks_done: int, settings: Settings) -> datetime:
    """When the janitor next looks at an unknown outcome, after ``checks_done`` looks
    (RENEWALS_UNKNOWN_RECHECK_DELAYS)."""
    return settings.unknown_recheck_policy.next_check_at(now, checks_done)


def past_retry_horizon(attempt: ChargeAttempt, now: datetime, settings: Settings) -> bool:
    """True once the attempt's first send is older than RENEWALS_UNKNOWN_RETRY_HORIZON_HOURS."""
    return not settings.unknown_recheck_policy.within_horizon(attempt.created_at, now)


def _attempt_to_send(
    session: Session, renewal: Renewal, *, now: datetime, settings: Settings
) -> ChargeAttempt | Skipped:
    """The attempt to send: an open one re-sent with its key, or a new one."""
    attempts = session.scalars(
        select(ChargeAttempt).where(ChargeAttempt.renewal_id == renewal.id)
    ).all()
    if any(a.status == AttemptStatus.SUCCEEDED for a in attempts):
        return Skipped("an attempt already succeeded for this period")
    attempt = next((a for a in attempts if a.status in OPEN_ATTEMPT_STATUSES), None)
    if attempt is None:
        attempt = ChargeAttempt(
            renewal_id=renewal.id,
            number=len(attempts) + 1,
            idempotency_key=new_idempotency_key(),
            status=AttemptStatus.IN_FLIGHT,
            amount=renewal.amount,
            currency=renewal.currency,
            sends=0,
            created_at=now,
        )
        session.add(attempt)
    elif attempt.status == AttemptStatus.IN_FLIGHT:
        return Skipped("an attempt is in flight")
    elif attempt.status == AttemptStatus.UNKNOWN and not settings.trust_idempotency_keys:
        return Skipped("the previous attempt's outcome is unknown")
    elif attempt.status == AttemptStatus.UNKNOWN and past_retry_horizon(attempt, now, settings):
        # FastStar keeps keys for a limited time (undocumented): an old key may execute anew.
        renewal.next_attempt_at = None
        audit(
            session,
            now=now,
            actor=ACTOR,
            action="unknown_escalated",
            subscription_id=renewal.subscription_id,
            renewal_id=renewal.id,
            attempt_id=attempt.id,
            reason="first sent longer ago than the retry horizon; an operator must reconcile",
        )
        log.warning("unknown_escalated", renewal_id=renewal.id, attempt_id=attempt.id)
        return Skipped("past the same-key retry horizon: escalated to operators")
    else:
        # Not sent, or unknown with trusted keys: the same key either replays the first
        # outcome or executes the charge that never happened; it cannot charge twice.
        attempt.status = attempt_transition(attempt.status, AttemptEvent.RESENT)
    attempt.sends += 1
    attempt.sent_at = now
    return attempt


def begin_charge(
    session: Session, renewal_id: int, *, now: datetime, settings: Settings
) -> ChargeOrder | Skipped | Refused:
    """Step 1: under lock, decide whether to charge, and commit the attempt if so."""
    locked = lock_renewal_with_card(session, renewal_id)
    if locked is None:
        return Skipped("no such renewal")
    renewal, sub, customer, card = locked
    event = _CLAIM_EVENTS.get(renewal.status)
    if event is None or (
        event is RenewalEvent.RESENT_SAME_KEY and not settings.trust_idempotency_keys
    ):
        return Skipped(f"renewal is {renewal.status}")
    if renewal.next_attempt_at is None or renewal.next_attempt_at > now:
        return Skipped("not due yet")
    reason = _refusal(renewal, sub, card, settings)
    if reason is not None:
        if renewal.status == RenewalStatus.UNKNOWN:
            return Skipped(f"{reason}; the unknown outcome is left to reconciliation")
        return _refuse(session, renewal, sub, reason, now=now)
    attempt = _attempt_to_send(session, renewal, now=now, settings=settings)
    if isinstance(attempt, Skipped):
        return attempt

    previous = renewal.status
    renewal.status = renewal_transition(renewal.status, event)
    renewal.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
    renewal.updated_at = now
    session.flush()  # assigns attempt.id
    audit(
        session,
        now=now,
        actor=ACTOR,
        action="charge_started",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        from_status=previous,
        to_status=renewal.status,
        details={"attempt": attempt.number, "send": attempt.sends},
    )
    return ChargeOrder(
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        subscription_id=sub.id,
        customer_id=customer.faststar_id,
        payment_method_id=card.faststar_id,
        amount=attempt.amount,
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
    )


def _move_subscription(
    session: Session, sub: Subscription, event: SubscriptionEvent, *, now: datetime, **kw: object
) -> None:
    if not can_subscription_transition(sub.status, event):
        # The operator paused or canceled while the call was in flight: the renewal's outcome
        # is recorded (I2) but the operator's decision stands.
        log.info("subscription_transition_skipped", subscription_id=sub.id, event=str(event))
        return
    new = subscription_transition(sub.status, event)
    if new != sub.status:
        audit(
            session,
            now=now,
            actor=ACTOR,
            action=f"subscription_{event}",
            subscription_id=sub.id,
            from_status=sub.status,
            to_status=new,
            **kw,  # type: ignore[arg-type]
        )
        sub.status = new
        sub.status_changed_at = now


def _on_paid(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    attempt: ChargeAttempt,
    outcome: Paid,
    *,
    now: datetime,
    late: bool,
) -> None:
    attempt.status = attempt_transition(
        attempt.status, AttemptEvent.RESOLVED_PAID if late else AttemptEvent.CHARGE_SUCCEEDED
    )
    attempt.payment_intent_id = outcome.payment_intent_id
    renewal.status = renewal_transition(
        renewal.status, RenewalEvent.RESOLVED_PAID if late else RenewalEvent.CHARGE_SUCCEEDED
    )
    renewal.payment_intent_id = outcome.payment_intent_id
    renewal.next_attempt_at = None
    renewal.last_error = None
    # The paid period becomes the current one (a late, older period never moves it back).
    if sub.current_period_start is None or renewal.period_start > sub.current_period_start:
        sub.current_period_start = renewal.period_start
        sub.current_period_end = renewal.period_end
    _move_subscription(session, sub, SubscriptionEvent.CHARGE_SUCCEEDED, now=now)


def _on_authentication_required(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    attempt: ChargeAttempt,
    outcome: AuthenticationRequired,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    attempt.status = attempt_transition(attempt.status, AttemptEvent.AUTHENTICATION_REQUIRED)
    attempt.http_status = outcome.http_status
    renewal.status = renewal_transition(renewal.status, RenewalEvent.AUTHENTICATION_REQUIRED)
    renewal.action_required_at = now
    renewal.next_attempt_at = None
    # The reminder/expiry timeline starts now, link or no link: a Checkout Session that can
    # never be created (FastStar refusing it) must not keep the renewal waiting forever.
    renewal.reminders_sent = 0
    renewal.action_wakeup_at = action_required_policy(settings).next_wakeup_at(now, 0)
    _move_subscription(session, sub, SubscriptionEvent.AUTHENTICATION_REQUIRED, now=now)


def _on_declined(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    attempt: ChargeAttempt,
    outcome: Declined,
    *,
    now: datetime,
    settings: Settings,
) -> dict[str, object]:
    attempt.status = attempt_transition(attempt.status, AttemptEvent.DECLINED)
    attempt.http_status = outcome.http_status
    attempt.decline_code = outcome.reason_code
    attempt.error = outcome.message
    renewal.declines += 1
    renewal.first_declined_at = renewal.first_declined_at or now
    renewal.last_decline_code = outcome.reason_code
    renewal.last_error = outcome.message
    decision = decide_after_decline(
        dunning_policy(settings),
        first_failure_at=renewal.first_declined_at,
        failures_so_far=renewal.declines,
        decline_code=outcome.reason_code,
    )
    if isinstance(decision, FinalActionDue):
        renewal.status = renewal_transition(renewal.status, RenewalEvent.DECLINED_FINAL)
        renewal.next_attempt_at = None
        _move_subscription(
            session, sub, decision.action.subscription_event, now=now, reason=decision.reason
        )
        return {"decline_code": outcome.reason_code, "final_action": decision.action.value}
    renewal.status = renewal_transition(renewal.status, RenewalEvent.DECLINED)
    renewal.next_attempt_at = decision.at
    _move_subscription(session, sub, SubscriptionEvent.DECLINED, now=now)
    return {"decline_code": outcome.reason_code, "next_attempt_at": decision.at.isoformat()}


def _on_not_sent(
    renewal: Renewal, attempt: ChargeAttempt, outcome: NotSent, *, now: datetime
) -> None:
    attempt.status = attempt_transition(attempt.status, AttemptEvent.NOT_SENT)
    attempt.http_status = outcome.http_status
    attempt.error = outcome.reason
    renewal.status = renewal_transition(renewal.status, RenewalEvent.NOT_SENT)
    renewal.next_attempt_at = NotSentBackoff().retry_at(
        now, attempt.sends, retry_after=outcome.retry_after
    )
    renewal.last_error = outcome.reason


def _on_unknown(
    renewal: Renewal,
    attempt: ChargeAttempt,
    outcome: Unknown,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    attempt.status = attempt_transition(attempt.status, AttemptEvent.OUTCOME_UNKNOWN)
    attempt.http_status = outcome.http_status
    attempt.error = outcome.reason
    renewal.status = renewal_transition(renewal.status, RenewalEvent.OUTCOME_UNKNOWN)
    # Re-examined on a backoff: by a same-key retry when keys are trusted, otherwise by
    # reconciliation; never turned into paid or failed by guessing.
    renewal.next_attempt_at = recheck_at(now, attempt.checks, settings)
    renewal.last_error = outcome.reason
    log.warning("charge_outcome_unknown", renewal_id=renewal.id, reason=outcome.reason)


def dunning_policy(settings: Settings) -> DunningPolicy:
    return DunningPolicy(
        retry_days=settings.dunning_days, final_action=FinalAction(settings.final_action)
    )


def action_required_policy(settings: Settings) -> ActionRequiredPolicy:
    return ActionRequiredPolicy(
        reminder_days=parse_day_list(settings.action_reminder_days, name="reminder days"),
        expire_after_days=settings.action_expire_days,
        final_action=FinalAction(settings.final_action),
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
    locked = _lock_for_outcome(session, order)
    renewal, sub, attempt = locked.renewal, locked.sub, locked.attempt
    # A slow call may return after the sweep gave its lease up and marked it unknown: a
    # definite "paid" is better than "unknown" and is recorded all the same; anything else
    # is left to reconciliation rather than guessed at.
    late = attempt.status == AttemptStatus.UNKNOWN
    if attempt.status != AttemptStatus.IN_FLIGHT and not (late and isinstance(outcome, Paid)):
        log.warning(
            "outcome_not_recorded",
            attempt_id=attempt.id,
            status=attempt.status,
            outcome=outcome.kind,
        )
        return follow
    previous = renewal.status
    attempt.finished_at = now
    renewal.lease_expires_at = None
    renewal.updated_at = now
    details: dict[str, object] = {"attempt": attempt.number, "outcome": outcome.kind}
    if isinstance(outcome, Paid):
        _on_paid(session, renewal, sub, attempt, outcome, now=now, late=late)
        details["payment_intent_id"] = outcome.payment_intent_id
    elif isinstance(outcome, AuthenticationRequired):
        _on_authentication_required(
            session, renewal, sub, attempt, outcome, now=now, settings=settings
        )
        follow.checkout_renewal_ids.append(renewal.id)
    elif isinstance(outcome, Declined):
        details |= _on_declined(session, renewal, sub, attempt, outcome, now=now, settings=settings)
    elif isinstance(outcome, NotSent):
        _on_not_sent(renewal, attempt, outcome, now=now)
    else:
        _on_unknown(renewal, attempt, outcome, now=now, settings=settings)
    audit(
        session,
        now=now,
        actor=ACTOR,
        action=f"charge_{outcome.kind}",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        from_status=previous,
        to_status=renewal.status,
        details=details,
    )
    message_id = _queue_outcome_email(session, locked, outcome, now=now, settings=settings)
    if message_id is not None:
        follow.deliver_message_ids.append(message_id)
    return follow


def _queue_outcome_email(
    session: Session,
    locked: _ForOutcome,
    outcome: ChargeOutcome,
    *,
    now: datetime,
    settings: Settings,
) -> int | None:
    """The email this outcome owes the customer, if any (the 402 email waits for its link)."""
    renewal, customer = locked.renewal, locked.customer
    if isinstance(outcome, Paid) and settings.send_receipts:
        return queue_receipt(session, renewal, customer, locked.card, now=now)
    if isinstance(outcome, Declined) and renewal.status == RenewalStatus.RETRY_SCHEDULED:
        assert renewal.next_attempt_at is not None
        return queue_payment_failed(
            session,
            renewal,
            customer,
            now=now,
            reason=outcome.message,
            next_attempt_at=renewal.next_attempt_at,
        )
    if isinstance(outcome, Declined) and renewal.status == RenewalStatus.FAILED:
        return queue_final_failure(
            session,
            renewal,
            customer,
            now=now,
            final_action=settings.final_action,
            reason=outcome.message,
        )
    return None


def record_configuration_error(
    session: Session, order: ChargeOrder, message: str, *, now: datetime
) -> None:
    """FastStar refused our credentials (401/403): nothing was charged. The attempt is
    recorded as not sent and retried in ten minutes, by which time an operator should have
    fixed the key; the task itself fails loudly."""
    retry = NotSent(reason=f"configuration error: {message}", retry_after=600)
    locked = _lock_for_outcome(session, order)
    renewal, sub, attempt = locked.renewal, locked.sub, locked.attempt
    if attempt.status != AttemptStatus.IN_FLIGHT:
        return
    attempt.status = attempt_transition(attempt.status, AttemptEvent.NOT_SENT)
    attempt.error = retry.reason
    attempt.finished_at = now
    renewal.status = renewal_transition(renewal.status, RenewalEvent.NOT_SENT)
    renewal.next_attempt_at = now + timedelta(seconds=retry.retry_after or 600)
    renewal.lease_expires_at = None
    renewal.last_error = retry.reason
    renewal.updated_at = now
    audit(
        session,
        now=now,
        actor=ACTOR,
        action="charge_configuration_error",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        attempt_id=attempt.id,
        from_status=RenewalStatus.CHARGING,
        to_status=renewal.status,
        reason=message,
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
    if not isinstance(order, ChargeOrder):
        log.debug("charge_skipped", renewal_id=renewal_id, reason=order.reason)
        return FollowUps()
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
