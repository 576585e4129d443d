"""The sweep: the database is the queue of record, Celery messages are only wake-up hints.

Each run, in one short transaction:

1. **materialise** due periods: for every active subscription whose next period has started,
   insert its renewal (unique per ``(subscription_id, period_start)``, inserted with
   ON CONFLICT DO NOTHING) and move the subscription's ``next_period_index`` on. The catch-up
   policy decides which missed period is charged after downtime (default: the latest only).
2. **expire** leases of renewals stuck in ``charging``: their worker died after committing
   the attempt, so whether FastStar saw the request cannot be known: they become ``unknown``.
3. **claim** renewals whose next attempt is due (new, retry, and with trusted idempotency
   keys, unknown), leasing them so that a second sweep does not claim them again until the
   lease expires, which is also how a lost message is rediscovered.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two sweeps (two beats) split
the work; on SQLite the transaction holds the database's single write lock. The caller
enqueues one task per returned id after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session

from renewals.config import Settings
from renewals.domain.catchup import CatchUpPolicy, next_period_to_charge, skipped_period_indices
from renewals.domain.dunning import UpcomingRenewalPolicy
from renewals.domain.periods import period, period_start
from renewals.domain.states import AttemptStatus, RenewalStatus, SubscriptionStatus
from renewals.models import (
    ChargeAttempt,
    Customer,
    InboxEvent,
    OutboxMessage,
    PaymentMethod,
    Renewal,
    Subscription,
)
from renewals.notifications.notices import queue_pre_renewal_notices
from renewals.notifications.outbox import PENDING, SENDING
from renewals.services.audit import audit
from renewals.services.charging import recheck_at

log = structlog.get_logger(__name__)

BATCH = 500
ACTOR = "sweep"


@dataclass
class SweepResult:
    materialised: list[int] = field(default_factory=list)
    charge: list[int] = field(default_factory=list)
    checkout: list[int] = field(default_factory=list)
    action_follow_up: list[int] = field(default_factory=list)
    poll_checkout: list[int] = field(default_factory=list)
    recheck_unknown: list[int] = field(default_factory=list)
    webhooks: list[int] = field(default_factory=list)
    deliver: list[int] = field(default_factory=list)
    became_unknown: list[int] = field(default_factory=list)


def sweep(session: Session, *, now: datetime, settings: Settings) -> SweepResult:
    result = SweepResult()
    result.materialised = materialise_due(session, now=now, settings=settings)
    result.became_unknown = expire_charging_leases(session, now=now, settings=settings)
    result.charge = claim_due_renewals(session, now=now, settings=settings)
    result.checkout = claim_missing_checkouts(session, now=now, settings=settings)
    result.action_follow_up = claim_action_follow_ups(session, now=now, settings=settings)
    result.poll_checkout = claim_checkout_polls(session, now=now, settings=settings)
    if not settings.trust_idempotency_keys:  # with trusted keys the charge path re-sends
        result.recheck_unknown = lease_rows(
            session,
            Renewal,
            Renewal.status == RenewalStatus.UNKNOWN,
            Renewal.next_attempt_at <= now,
            now=now,
            settings=settings,
        )
    result.webhooks = lease_rows(
        session, InboxEvent, InboxEvent.status == "pending", now=now, settings=settings
    )
    queue_pre_renewal_emails(session, now=now, settings=settings)  # delivered just below
    result.deliver = claim_due_messages(session, now=now, settings=settings)
    return result


def _insert_renewal_ignoring_duplicates(session: Session, values: dict[str, object]) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(Renewal)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
    )
    session.execute(statement)


def materialise_due(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Create the renewal of every subscription whose next period has started.

    Returns the ids of the subscriptions that got one; the claim step picks the renewals up.
    """
    due = session.scalars(
        select(Subscription)
        .where(Subscription.status == SubscriptionStatus.ACTIVE)
        .where(Subscription.next_renewal_at <= now)
        .order_by(Subscription.next_renewal_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    subscription_ids = []
    policy = CatchUpPolicy(settings.catch_up)
    for sub in due:
        last = sub.next_period_index - 1 if sub.next_period_index > 0 else None
        index = next_period_to_charge(
            sub.anchor,
            sub.interval,
            sub.interval_count,
            now=now,
            last_settled_index=last,
            policy=policy,
        )
        if index is None:  # next_renewal_at was ahead of the schedule; realign it.
            sub.next_renewal_at = period_start(
                sub.anchor, sub.interval, sub.interval_count, sub.next_period_index
            )
            continue
        if sub.cancel_at_period_end:
            audit(
                session,
                now=now,
                actor=ACTOR,
                action="canceled_at_period_end",
                subscription_id=sub.id,
                from_status=sub.status,
                to_status=SubscriptionStatus.CANCELED,
            )
            sub.status = SubscriptionStatus.CANCELED
            sub.status_changed_at = now
            continue
        chosen = period(sub.anchor, sub.interval, sub.interval_count, index)
        _insert_renewal_ignoring_duplicates(
            session,
            {
                "subscription_id": sub.id,
                "period_index": chosen.index,
                "period_start": chosen.start,
                "period_end": chosen.end,
                "amount": sub.amount,
                "currency": sub.currency,
                "status": RenewalStatus.PENDING.value,
                "next_attempt_at": now,
                "declines": 0,
                "reminders_sent": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
        skipped = list(skipped_period_indices(last, index))
        audit(
            session,
            now=now,
            actor=ACTOR,
            action="renewal_created",
            subscription_id=sub.id,
            to_status=RenewalStatus.PENDING,
            details={
                "period_index": index,
                "period_start": chosen.start.isoformat(),
                **({"skipped_periods": skipped} if skipped else {}),
            },
        )
        sub.next_period_index = index + 1
        sub.next_renewal_at = chosen.end
        subscription_ids.append(sub.id)
    return subscription_ids


def expire_charging_leases(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """A renewal still ``charging`` after its lease died with its worker: outcome unknown."""
    stuck = session.scalars(
        select(Renewal)
        .where(Renewal.status == RenewalStatus.CHARGING)
        .where(Renewal.lease_expires_at <= now)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for renewal in stuck:
        attempt = session.scalars(
            select(ChargeAttempt)
            .where(ChargeAttempt.renewal_id == renewal.id)
            .where(ChargeAttempt.status == AttemptStatus.IN_FLIGHT)
        ).one_or_none()
        if attempt is not None:
            attempt.status = AttemptStatus.UNKNOWN
            attempt.error = "worker lost while the charge was in flight"
            attempt.finished_at = now
        renewal.status = RenewalStatus.UNKNOWN
        renewal.lease_expires_at = None
        renewal.next_attempt_at = recheck_at(now, 1, settings)
        renewal.last_error = "worker lost while the charge was in flight"
        renewal.updated_at = now
        audit(
            session,
            now=now,
            actor=ACTOR,
            action="lease_expired",
            subscription_id=renewal.subscription_id,
            renewal_id=renewal.id,
            attempt_id=attempt.id if attempt else None,
            from_status=RenewalStatus.CHARGING,
            to_status=RenewalStatus.UNKNOWN,
            reason="the worker holding the charge disappeared; outcome cannot be known",
        )
        log.warning("charge_outcome_unknown", renewal_id=renewal.id, reason="lease expired")
    return [r.id for r in stuck]


def claimable_statuses(settings: Settings) -> list[RenewalStatus]:
    statuses = [RenewalStatus.PENDING, RenewalStatus.RETRY_SCHEDULED]
    if settings.trust_idempotency_keys:
        # Only safe when FastStar honours keys: the retry re-sends the same key.
        statuses.append(RenewalStatus.UNKNOWN)
    return statuses


Leased = type[Renewal] | type[OutboxMessage] | type[InboxEvent]


def lease_rows(
    session: Session,
    model: Leased,
    *conditions: ColumnElement[bool],
    now: datetime,
    settings: Settings,
    order_by: ColumnElement[Any] | InstrumentedAttribute[Any] | None = None,
) -> list[int]:
    """Lease up to BATCH rows of ``model`` that match ``conditions`` and hold no live lease.

    The lease keeps a second sweep from enqueueing the same work again, and its expiry is how
    work whose message was lost comes back.
    """
    query = (
        select(model.id)
        .where(*conditions)
        .where(or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now))
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    if order_by is not None:
        query = query.order_by(order_by)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
        )
    return ids


def claim_due_renewals(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Lease due renewals for charging."""
    return lease_rows(
        session,
        Renewal,
        Renewal.status.in_(claimable_statuses(settings)),
        Renewal.next_attempt_at <= now,
        now=now,
        settings=settings,
        order_by=Renewal.next_attempt_at,
    )


def claim_missing_checkouts(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Renewals that need authentication but whose Checkout Session was never created.

    Not those whose reminder or final action is due: the follow-up makes the link itself
    (or ends the timeline), and a checkout that keeps failing must not starve it."""
    return lease_rows(
        session,
        Renewal,
        Renewal.status == RenewalStatus.REQUIRES_ACTION,
        Renewal.checkout_session_id.is_(None),
        or_(Renewal.action_wakeup_at.is_(None), Renewal.action_wakeup_at > now),
        now=now,
        settings=settings,
    )


def claim_action_follow_ups(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Renewals waiting for the customer whose next reminder or final action is due."""
    return lease_rows(
        session,
        Renewal,
        Renewal.status == RenewalStatus.REQUIRES_ACTION,
        Renewal.action_wakeup_at <= now,
        now=now,
        settings=settings,
        order_by=Renewal.action_wakeup_at,
    )


def pre_renewal_notice_query(now: datetime, notice_days: int) -> Select[Any]:
    """Active subscriptions renewing within ``notice_days`` whose coming period has had no
    notices yet (the partial index ``ix_subscriptions_notice_due`` holds exactly those), and
    that will really renew (not set to cancel at the period's end)."""
    return (
        select(Subscription, Customer, PaymentMethod)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(Subscription.status == SubscriptionStatus.ACTIVE)
        .where(Subscription.next_renewal_at > now)
        .where(Subscription.next_renewal_at <= now + timedelta(days=notice_days))
        .where(
            or_(  # NOTICE_DUE_SQL, the partial index's condition
                Subscription.notices_period_index.is_(None),
                Subscription.notices_period_index < Subscription.next_period_index,
            )
        )
        .where(Subscription.cancel_at_period_end.is_(False))
        .limit(BATCH)
        .with_for_update(of=Subscription, skip_locked=True)
    )


def queue_pre_renewal_emails(session: Session, *, now: datetime, settings: Settings) -> int:
    """Subscriptions entering the notice window before their next renewal: the upcoming-
    renewal notice (if switched on) and the expiring-card warning, once per period."""
    policy = UpcomingRenewalPolicy(notice_days=settings.upcoming_notice_days)
    rows = session.execute(pre_renewal_notice_query(now, policy.notice_days)).tuples().all()
    for sub, customer, card in rows:
        queue_pre_renewal_notices(
            session, sub, customer, card, now=now, upcoming=settings.upcoming_renewal_notice
        )
        sub.notices_period_index = sub.next_period_index
    return len(rows)


def claim_checkout_polls(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Open Checkout Sessions due for a status check (for deployments without webhooks)."""
    if not settings.checkout_poll_interval:
        return []
    return lease_rows(
        session,
        Renewal,
        Renewal.status == RenewalStatus.REQUIRES_ACTION,
        Renewal.checkout_poll_at <= now,
        now=now,
        settings=settings,
        order_by=Renewal.checkout_poll_at,
    )


def claim_due_messages(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Outbox rows whose delivery message was lost or whose retry is due.

    A row left ``sending`` by a worker that died goes back to ``pending`` after its lease.
    """
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == SENDING)
        .where(OutboxMessage.lease_expires_at <= now)
        .values(status=PENDING, next_attempt_at=now, lease_expires_at=None)
    )
    return lease_rows(
        session,
        OutboxMessage,
        OutboxMessage.status == PENDING,
        OutboxMessage.next_attempt_at <= now,
        now=now,
        settings=settings,
    )
