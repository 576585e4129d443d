"""Subscriptions, renewals and charge attempts: every status change, its times, the
renewal's one next job and lease, and the audit row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.domain.states import (
    ATTEMPT_TRANSITIONS,
    RENEWAL_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    AttemptEvent,
    AttemptStatus,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    SubscriptionStatus,
)
from renewals.domain.work import Work
from renewals.models import ChargeAttempt, Renewal, Subscription
from renewals.transitions._audit import audit_row, write, write_many
from renewals.transitions.merchant_events import (
    merchant_events_enabled,
    tell_subscription_change,
    tell_subscriptions_changed,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Wake:
    """A renewal's one next job and when it is due."""

    work: Work
    at: datetime


def create_subscription(session: Session, *, now: datetime, actor: str, **values: Any) -> int:
    """Insert a new, active subscription; returns its id."""
    sub = Subscription(
        **values, status=SubscriptionStatus.ACTIVE, status_changed_at=now, created_at=now
    )
    session.add(sub)
    session.flush()
    write(
        session,
        now=now,
        actor=actor,
        action="subscription_created",
        subscription_id=sub.id,
        to_status=SubscriptionStatus.ACTIVE,
    )
    return sub.id


def move_subscription(
    session: Session,
    sub: Subscription,
    event: SubscriptionEvent,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    renewal: Renewal | None = None,
) -> bool:
    """Apply ``event`` if the table allows it in the subscription's status; False if not.

    Not raising is deliberate: a charge outcome that lands on a subscription an operator
    paused or canceled meanwhile is still recorded on the renewal, and the operator's
    decision stands.

    The merchant's event for the change (if it is one they hear of) is written here too;
    ``renewal`` is the renewal that caused it, when the caller has it in hand.
    """
    if not SUBSCRIPTION_TRANSITIONS.allows(sub.status, event):
        log.info("subscription_transition_skipped", subscription_id=sub.id, transition=str(event))
        return False
    before = sub.status
    after = SUBSCRIPTION_TRANSITIONS.apply(before, event)
    if after != before:
        sub.status = after
        sub.status_changed_at = now
        write(
            session,
            now=now,
            actor=actor,
            action=f"subscription_{event}",
            subscription_id=sub.id,
            from_status=before,
            to_status=after,
            reason=reason,
            details=details,
        )
    tell_subscription_change(
        session, sub, event, before=before, after=after, now=now, renewal=renewal
    )
    return True


def move_subscriptions(
    session: Session,
    ids: Sequence[int],
    event: SubscriptionEvent,
    *,
    before: SubscriptionStatus,
    now: datetime,
    actor: str,
    reason: str | None = None,
) -> list[int]:
    """Apply ``event`` to every subscription of ``ids`` still in ``before``, set-based: one
    UPDATE and the audit rows in one statement. Returns the ids that moved (the caller
    usually holds their row locks, so all of them)."""
    after = SUBSCRIPTION_TRANSITIONS.apply(before, event)
    if not ids:
        return []
    rows = (
        session.execute(
            update(Subscription)
            .where(Subscription.id.in_(ids), Subscription.status == before)
            .values(status=after, status_changed_at=now)
            .returning(
                Subscription.id,
                Subscription.amount,
                Subscription.currency,
                Subscription.current_period_start,
                Subscription.current_period_end,
            )
            .execution_options(synchronize_session=False)
        )
        .tuples()
        .all()
    )
    moved = [row[0] for row in rows]
    if merchant_events_enabled(session):
        tell_subscriptions_changed(session, rows, event, before=before, after=after, now=now)
    write_many(
        session,
        [
            audit_row(
                now=now,
                actor=actor,
                action=f"subscription_{event}",
                subscription_id=subscription_id,
                from_status=before,
                to_status=after,
                reason=reason,
            )
            for subscription_id in moved
        ],
    )
    return moved


def move_attempt(attempt: ChargeAttempt, event: AttemptEvent, *, now: datetime) -> None:
    """The attempt's half of a renewal transition (its audit row is the renewal's)."""
    attempt.status = ATTEMPT_TRANSITIONS.apply(attempt.status, event)
    if attempt.status == AttemptStatus.IN_FLIGHT:
        attempt.sends += 1
        attempt.sent_at = now
        attempt.finished_at = None
    else:
        attempt.finished_at = now


def new_attempt(
    session: Session, renewal: Renewal, *, number: int, idempotency_key: str, now: datetime
) -> ChargeAttempt:
    """A new attempt, in flight from the start (its row is committed before the call)."""
    attempt = ChargeAttempt(
        renewal_id=renewal.id,
        number=number,
        idempotency_key=idempotency_key,
        status=AttemptStatus.IN_FLIGHT,
        amount=renewal.amount,
        currency=renewal.currency,
        sends=1,
        checks=0,
        created_at=now,
        sent_at=now,
    )
    session.add(attempt)
    return attempt


def move_renewal(
    session: Session,
    renewal: Renewal,
    event: RenewalEvent,
    *,
    now: datetime,
    actor: str,
    wake: Wake | None,
    lease_seconds: int | None = None,
    attempt: ChargeAttempt | None = None,
    attempt_event: AttemptEvent | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Apply ``event`` to the renewal (and ``attempt_event`` to its attempt), set its next
    job, and lease it for ``lease_seconds`` when the caller hands the work on itself (the
    lease keeps the sweep from handing it out a second time); otherwise the lease is
    cleared. One audit row covers both rows."""
    before = renewal.status
    renewal.status = RENEWAL_TRANSITIONS.apply(before, event)
    attempt_change: dict[str, Any] = {}
    if attempt is not None and attempt_event is not None:
        attempt_before = attempt.status
        move_attempt(attempt, attempt_event, now=now)
        attempt_change = {"attempt": [str(attempt_before), str(attempt.status)]}
    set_wake(renewal, wake, now=now, lease_seconds=lease_seconds)
    if attempt is not None and attempt.id is None:
        session.flush()  # assigns the new attempt's id, which the audit row names
    write(
        session,
        now=now,
        actor=actor,
        action=f"renewal_{event}",
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        attempt_id=attempt.id if attempt is not None else None,
        from_status=before,
        to_status=renewal.status,
        reason=reason,
        details={**attempt_change, **(details or {})} or None,
    )


def wake_values(
    wake: Wake | None, *, now: datetime, lease_seconds: int | None = None
) -> dict[str, Any]:
    """The renewal columns that say what its next job is and who holds it."""
    return {
        "wake": wake.work if wake else None,
        "wake_at": wake.at if wake else None,
        "lease_expires_at": now + timedelta(seconds=lease_seconds) if lease_seconds else None,
        "updated_at": now,
    }


def set_wake(
    renewal: Renewal, wake: Wake | None, *, now: datetime, lease_seconds: int | None = None
) -> None:
    for column, value in wake_values(wake, now=now, lease_seconds=lease_seconds).items():
        setattr(renewal, column, value)


def reschedule(
    renewal: Renewal, wake: Wake | None, *, now: datetime, lease_seconds: int | None = None
) -> None:
    """A new next job without a status change (a reminder sent, a recheck done)."""
    set_wake(renewal, wake, now=now, lease_seconds=lease_seconds)


def create_renewals(
    session: Session, rows: list[dict[str, Any]], *, now: datetime, actor: str
) -> list[int]:
    """Insert the renewals of newly due periods (``audit_details`` in a row goes to its
    audit row), pending and due for their charge now,
    ignoring a period that already has one (unique per subscription and period start);
    their audit rows follow in one statement. Returns the new renewals' ids."""
    if not rows:
        return []
    values = [
        {
            **{k: v for k, v in row.items() if k != "audit_details"},
            "status": RenewalStatus.PENDING.value,
            "wake": Work.CHARGE.value,
            "wake_at": now,
            "declines": 0,
            "reminders_sent": 0,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One cached statement with the rows as parameters: SQLAlchemy sends it as multi-row
    # INSERTs ("insertmanyvalues") without compiling a new 500-row VALUES clause each time.
    # The table, not the mapped class: the ORM's bulk path would track every new primary
    # key, which costs more than the INSERT itself at a batch of hundreds.
    created = session.execute(
        insert_(cast(Table, Renewal.__table__))
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
        .returning(Renewal.id, Renewal.subscription_id, Renewal.period_index),
        values,
    ).all()
    details = {row["subscription_id"]: row for row in rows}
    write_many(
        session,
        [
            audit_row(
                now=now,
                actor=actor,
                action="renewal_created",
                subscription_id=subscription_id,
                renewal_id=renewal_id,
                to_status=RenewalStatus.PENDING,
                details=details[subscription_id].get("audit_details"),
            )
            for renewal_id, subscription_id, _ in created
        ],
    )
    return [renewal_id for renewal_id, _, _ in created]


def expire_charging_leases(
    session: Session, *, now: datetime, recheck_at: datetime, limit: int
) -> list[int]:
    """Renewals still ``charging`` after their lease: the worker vanished after committing
    the attempt, so whether FastStar saw the call cannot be known. They and their in-flight
    attempts become ``unknown``, due for the janitor at ``recheck_at``; set-based."""
    after = RENEWAL_TRANSITIONS.apply(RenewalStatus.CHARGING, RenewalEvent.OUTCOME_UNKNOWN)
    attempt_after = ATTEMPT_TRANSITIONS.apply(AttemptStatus.IN_FLIGHT, AttemptEvent.OUTCOME_UNKNOWN)
    reason = "worker lost while the charge was in flight"
    stuck = (
        select(Renewal.id)
        .where(Renewal.status == RenewalStatus.CHARGING, Renewal.lease_expires_at <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(stuck))
    if not ids:
        return []
    moved = session.execute(
        update(Renewal)
        .where(Renewal.id.in_(ids))
        .values(
            status=after,
            wake=Work.RECHECK,
            wake_at=recheck_at,
            lease_expires_at=None,
            last_error=reason,
            updated_at=now,
        )
        .returning(Renewal.id, Renewal.subscription_id)
        .execution_options(synchronize_session=False)
    ).all()
    attempts = dict(
        session.execute(
            update(ChargeAttempt)
            .where(
                and_(
                    ChargeAttempt.renewal_id.in_(ids),
                    ChargeAttempt.status == AttemptStatus.IN_FLIGHT,
                )
            )
            .values(status=attempt_after, error=reason, finished_at=now)
            .returning(ChargeAttempt.renewal_id, ChargeAttempt.id)
            .execution_options(synchronize_session=False)
        )
        .tuples()
        .all()
    )
    write_many(
        session,
        [
            audit_row(
                now=now,
                actor="sweep",
                action=f"renewal_{RenewalEvent.OUTCOME_UNKNOWN}",
                subscription_id=subscription_id,
                renewal_id=renewal_id,
                attempt_id=attempts.get(renewal_id),
                from_status=RenewalStatus.CHARGING,
                to_status=after,
                reason="the lease expired: " + reason,
            )
            for renewal_id, subscription_id in moved
        ],
    )
    for renewal_id, _ in moved:
        log.warning("charge_outcome_unknown", renewal_id=renewal_id, reason="lease expired")
    return [renewal_id for renewal_id, _ in moved]


__all__ = [
    "Wake",
    "create_renewals",
    "create_subscription",
    "expire_charging_leases",
    "move_attempt",
    "move_renewal",
    "move_subscription",
    "move_subscriptions",
    "new_attempt",
    "reschedule",
]
