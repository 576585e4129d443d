"""Recording what FastStar answered to a charge (step 3 of 3), in one transaction.

The answer lands on the attempt, the renewal and the subscription, with any email in the
outbox: paid books the payment (:mod:`renewals.services.booking`), 402 opens the
on-session path, a decline follows the dunning policy, "not sent" re-sends the same attempt
soon, and an unknown outcome is left to the janitor, never guessed at (I3).

On PostgreSQL the answer "paid" to an attempt still in flight is booked in one statement
(:func:`renewals.transitions.fast_path.book_paid_charge`). When that statement finds the
renewal moved on during the call (the sweep expired its lease, an operator acted) it writes
nothing, and the outcome is recorded here the careful way: under lock, row by row, as every
other outcome and every SQLite write is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import assert_never

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.domain.dunning import FinalActionDue, decide_after_decline
from renewals.domain.states import AttemptEvent, AttemptStatus, RenewalEvent, SubscriptionEvent
from renewals.domain.work import Work
from renewals.faststar import (
    AuthenticationRequired,
    ChargeOutcome,
    Declined,
    NotSent,
    Paid,
    Unknown,
)
from renewals.models import ChargeAttempt, Customer, PaymentMethod, Renewal, Subscription
from renewals.notifications.notices import (
    queue_final_failure,
    queue_payment_failed,
    receipt_email,
)
from renewals.policies import policies
from renewals.services.booking import Locked, book
from renewals.services.charge_checks import ACTOR, ChargeOrder
from renewals.services.followups import FollowUps
from renewals.transitions import Wake, fast_path

log = structlog.get_logger(__name__)


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


def _book_in_one_statement(
    session: Session, order: ChargeOrder, outcome: Paid, *, now: datetime, settings: Settings
) -> FollowUps | None:
    """Paid, on time, on PostgreSQL: everything in one statement; None when the renewal is no
    longer as the charge left it (nothing was written)."""
    booked = fast_path.book_paid_charge(
        session,
        renewal_id=order.renewal_id,
        attempt_id=order.attempt_id,
        payment_intent_id=outcome.payment_intent_id,
        now=now,
        actor=ACTOR,
        receipt=(
            receipt_email(order.receipt, outcome.payment_intent_id)
            if settings.send_receipts
            else None
        ),
    )
    if booked is None:
        log.info("paid_outcome_needs_the_careful_path", renewal_id=order.renewal_id)
        return None
    follow = FollowUps()
    follow.add(Work.DELIVER, booked.receipt_id)
    return follow


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
    """Step 3: record what FastStar answered, in one transaction (the caller commits)."""
    follow: FollowUps | None = None
    if isinstance(outcome, Paid) and fast_path.supported(session):
        follow = _book_in_one_statement(session, order, outcome, now=now, settings=settings)
    if follow is None:
        follow = record_outcome_row_by_row(session, order, outcome, now=now, settings=settings)
    crash_point("response_read_result_uncommitted")
    return follow


def record_outcome_row_by_row(
    session: Session,
    order: ChargeOrder,
    outcome: ChargeOutcome,
    *,
    now: datetime,
    settings: Settings,
) -> FollowUps:
    """The careful path for every outcome: lock, look, then write through the ORM."""
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
