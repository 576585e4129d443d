"""The sweep: the database is the queue of record, Celery messages are only wake-up hints.

Each run, in one short transaction:

1. **materialise** due periods: for every active subscription whose next period has started,
   insert its renewal (unique per ``(subscription_id, period_start)``, inserted with
   ON CONFLICT DO NOTHING) and move the subscription's ``next_period_index`` on. The catch-up
   policy decides which missed period is charged after downtime (default: the latest only).
2. **expire** leases of renewals stuck in ``charging``: their worker died after committing
   the attempt, so whether FastStar saw the request cannot be known: they become ``unknown``.
3. **claim** every renewal whose one next job is due (its charge, the janitor's recheck, or
   the follow-up while its customer must authenticate), inbox events still pending, and
   emails due, leasing each row so a second sweep does not hand it out again until the
   lease expires, which is also how a lost message is rediscovered. While charges are
   halted (``renewals halt``) nothing is claimed to charge; every other job goes on.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two sweeps (two beats) split
the work; on SQLite the transaction holds the database's single write lock. The result is
the work to hand out, by kind; the caller enqueues it after the commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.catchup import CatchUpPolicy, next_period_to_charge, skipped_period_indices
from renewals.domain.dunning import UpcomingRenewalPolicy
from renewals.domain.periods import period, period_start
from renewals.domain.states import InboxStatus, OutboxStatus, SubscriptionEvent, SubscriptionStatus
from renewals.domain.work import Work
from renewals.models import (
    Customer,
    InboxEvent,
    OutboxMessage,
    PaymentMethod,
    Renewal,
    Subscription,
)
from renewals.notifications.notices import queue_pre_renewal_notices
from renewals.policies import policies
from renewals.services.followups import FollowUps
from renewals.services.halt import is_halted

log = structlog.get_logger(__name__)

BATCH = 500
ACTOR = "sweep"


def sweep(session: Session, *, now: datetime, settings: Settings) -> FollowUps:
    """One sweep (see the module docstring); returns the work to hand out, by kind."""
    follow = FollowUps()
    materialise_due(session, now=now, settings=settings)
    transitions.expire_charging_leases(
        session,
        now=now,
        recheck_at=policies(settings).unknown_recheck.next_check_at(now, 0),
        limit=BATCH,
    )
    for renewal_id, work in claim_due_renewals(session, now=now, settings=settings):
        follow.add(work, renewal_id)
    for inbox_id in lease_rows(
        session,
        InboxEvent,
        InboxEvent.status == InboxStatus.PENDING.value,
        now=now,
        settings=settings,
    ):
        follow.add(Work.WEBHOOK, inbox_id)
    queue_pre_renewal_emails(session, now=now, settings=settings)  # delivered just below
    for message_id in claim_due_messages(session, now=now, settings=settings):
        follow.add(Work.DELIVER, message_id)
    return follow


def materialise_due(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Create the renewal of every subscription whose next period has started.

    Returns the new renewals' ids; the claim step picks them up.
    """
    due = session.scalars(
        select(Subscription)
        .where(Subscription.status == SubscriptionStatus.ACTIVE)
        .where(Subscription.next_renewal_at <= now)
        .order_by(Subscription.next_renewal_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    rows: list[dict[str, object]] = []
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
            transitions.move_subscription(
                session,
                sub,
                SubscriptionEvent.CANCELED_BY_OPERATOR,
                now=now,
                actor=ACTOR,
                reason="canceled at the end of the period",
            )
            continue
        chosen = period(sub.anchor, sub.interval, sub.interval_count, index)
        skipped = list(skipped_period_indices(last, index))
        rows.append(
            {
                "subscription_id": sub.id,
                "period_index": chosen.index,
                "period_start": chosen.start,
                "period_end": chosen.end,
                "amount": sub.amount,
                "currency": sub.currency,
                "audit_details": {
                    "period_index": index,
                    "period_start": chosen.start.isoformat(),
                    **({"skipped_periods": skipped} if skipped else {}),
                },
            }
        )
        sub.next_period_index = index + 1
        sub.next_renewal_at = chosen.end
    return transitions.create_renewals(session, rows, now=now, actor=ACTOR)


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


def claim_due_renewals(
    session: Session, *, now: datetime, settings: Settings
) -> list[tuple[int, Work]]:
    """Lease every renewal whose one next job is due, oldest first, with that job (no
    charge while halted: those renewals keep their due time and are claimed after unhalt)."""
    query = (
        select(Renewal.id, Renewal.wake)
        .where(Renewal.wake_at <= now, Renewal.wake.is_not(None))
        .where(or_(Renewal.lease_expires_at.is_(None), Renewal.lease_expires_at <= now))
        .order_by(Renewal.wake_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    if is_halted(session):
        query = query.where(Renewal.wake != Work.CHARGE)
    due = [(renewal_id, work) for renewal_id, work in session.execute(query).tuples() if work]
    if due:
        session.execute(
            update(Renewal)
            .where(Renewal.id.in_([renewal_id for renewal_id, _ in due]))
            .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
        )
    return due


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


def claim_due_messages(session: Session, *, now: datetime, settings: Settings) -> list[int]:
    """Outbox rows whose delivery message was lost or whose retry is due.

    A row left ``sending`` by a worker that died goes back to ``pending`` after its lease.
    """
    transitions.expire_sending_leases(session, now=now)
    return lease_rows(
        session,
        OutboxMessage,
        OutboxMessage.status == OutboxStatus.PENDING.value,
        OutboxMessage.next_attempt_at <= now,
        now=now,
        settings=settings,
    )
