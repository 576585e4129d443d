"""The sweep: the database is the queue of record, Celery messages are only wake-up hints.

Each run, in one short transaction:

1. **materialise** due periods: for every active subscription whose next period has started,
   insert its renewal (unique per ``(subscription_id, period_start)``, inserted with
   ON CONFLICT DO NOTHING) and move the subscription's ``next_period_index`` on. The catch-up
   policy decides which missed period is charged after downtime (default: the latest only).
   Set-based: one SELECT of plain rows, one INSERT of the batch's renewals, one statement of
   audit rows, one UPDATE of the subscriptions; no ORM objects.
2. **expire** leases of renewals stuck in ``charging``: their worker died after committing
   the attempt, so whether FastStar saw the request cannot be known: they become ``unknown``.
3. **claim** every renewal whose one next job is due (its charge, the janitor's recheck, or
   the follow-up while its customer must authenticate), inbox events still pending, and
   emails and merchant events due (each subscription's events in order), leasing each row
   so a second sweep does not hand it out again until the lease expires, which is also how
   a lost message is rediscovered. While charges are halted (``renewals halt``) nothing is
   claimed to charge; every other job goes on.

One run takes at most one batch of each. When more is due, the sweep task starts the drain
(:mod:`renewals.services.drain`): a follow-on chain that materialises and claims batch after
batch, each in its own transaction, without waiting for the next beat. Renewal claims are
held back by **backpressure**: no more than ``depth`` renewals may be claimed for their
charge and not started yet (see :func:`unstarted_claims`), so a backlog of a million
renewals reaches the broker as fast as workers take it, not all at once.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two sweeps (two beats, a
beat and the drain) split the work; on SQLite each transaction holds the database's single
write lock. The result is the work to hand out, by kind; the caller enqueues it after the
commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    column,
    func,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from renewals import transitions
from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.domain.catchup import CatchUpPolicy, next_period_to_charge, skipped_period_indices
from renewals.domain.dunning import UpcomingRenewalPolicy
from renewals.domain.periods import period, period_start
from renewals.domain.states import (
    InboxStatus,
    OutboxStatus,
    RenewalStatus,
    SubscriptionEvent,
    SubscriptionStatus,
)
from renewals.domain.work import Work
from renewals.models import (
    Customer,
    InboxEvent,
    OutboxMessage,
    PaymentMethod,
    Renewal,
    Subscription,
)
from renewals.models.base import UTCDateTime
from renewals.notifications.notices import queue_pre_renewal_notices
from renewals.policies import policies
from renewals.services.followups import FollowUps
from renewals.services.halt import is_halted
from renewals.services.merchant_webhooks import claim_due_merchant_events

log = structlog.get_logger(__name__)

# Rows one transaction takes on: big enough that a statement's round trip is shared by
# hundreds of rows, small enough that a transaction (and SQLite's one write lock) lasts tens
# of milliseconds, so a webhook or a worker's commit never waits long behind a sweep.
BATCH = 500
# Backpressure: how many renewals may wait claimed for their charge before it starts (their
# messages are in the broker or a worker's buffer). A few batches keep every worker fed
# between two drain steps without pushing a backlog of millions into the broker; rows
# claimed but never started (a lost message) come back when their lease expires.
DEPTH = 4 * BATCH
ACTOR = "sweep"


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one sweep transaction takes on: ``batch`` rows of each kind, and renewals
    only while fewer than ``depth`` claimed ones wait to start (None: no backpressure)."""

    batch: int = BATCH
    depth: int | None = DEPTH


# Read at call time, so a test (or the bench) may swap it for smaller or unbounded limits.
LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep transaction did, for the caller to decide whether more is due."""

    follow: FollowUps
    # Subscriptions found due (and locked) this time.
    due_subscriptions: int
    # Renewals claimed, and how many the claim asked for (0: backpressure was full).
    claimed: int
    claim_limit: int
    batch: int

    @property
    def more_due(self) -> bool:
        """A batch ran full (or backpressure stopped the claim): more may be due now."""
        return self.due_subscriptions >= self.batch or self.claimed >= self.claim_limit

    @property
    def drained(self) -> bool:
        """Nothing was left to materialise, and the claim took less than it could."""
        return self.due_subscriptions == 0 and self.claimed < self.claim_limit


def sweep(
    session: Session, *, now: datetime, settings: Settings, limits: Limits | None = None
) -> FollowUps:
    """One sweep (see the module docstring); returns the work to hand out, by kind."""
    return sweep_once(session, now=now, settings=settings, limits=limits).follow


def sweep_once(
    session: Session, *, now: datetime, settings: Settings, limits: Limits | None = None
) -> Swept:
    """One sweep, one batch of each kind of work, with what it found."""
    limits = limits or LIMITS
    follow = FollowUps()
    due = materialise_due(session, now=now, settings=settings, limit=limits.batch)
    transitions.expire_charging_leases(
        session,
        now=now,
        recheck_at=policies(settings).unknown_recheck.next_check_at(now, 0),
        limit=limits.batch,
    )
    claim_limit = claim_room(session, now=now, limits=limits)
    claimed = claim_due_renewals(session, now=now, settings=settings, limit=claim_limit)
    for renewal_id, work in claimed:
        follow.add(work, renewal_id)
    for inbox_id in lease_rows(
        session,
        InboxEvent,
        InboxEvent.status == InboxStatus.PENDING.value,
        now=now,
        settings=settings,
        limit=limits.batch,
    ):
        follow.add(Work.WEBHOOK, inbox_id)
    queue_pre_renewal_emails(session, now=now, settings=settings)  # delivered just below
    for message_id in claim_due_messages(session, now=now, settings=settings):
        follow.add(Work.DELIVER, message_id)
    for event_row_id in claim_due_merchant_events(
        session, now=now, settings=settings, limit=limits.batch
    ):
        follow.add(Work.MERCHANT_EVENT, event_row_id)
    return Swept(follow, due.subscriptions, len(claimed), claim_limit, limits.batch)


def drain_step(session: Session, *, now: datetime, settings: Settings, limits: Limits) -> Swept:
    """One step of the drain: materialise a batch and claim what backpressure allows."""
    due = materialise_due(session, now=now, settings=settings, limit=limits.batch)
    claim_limit = claim_room(session, now=now, limits=limits)
    claimed = claim_due_renewals(session, now=now, settings=settings, limit=claim_limit)
    follow = FollowUps()
    for renewal_id, work in claimed:
        follow.add(work, renewal_id)
    return Swept(follow, due.subscriptions, len(claimed), claim_limit, limits.batch)


def claim_room(session: Session, *, now: datetime, limits: Limits) -> int:
    """How many renewals a claim may take now: a batch, less whatever would push the
    claimed-but-unstarted rows past the depth."""
    if limits.depth is None:
        return limits.batch
    waiting = unstarted_claims(session, now=now, limit=limits.depth)
    return max(0, min(limits.batch, limits.depth - waiting))


def unstarted_claims(session: Session, *, now: datetime, limit: int) -> int:
    """Renewals claimed for their charge whose charge has not begun: still ``pending`` or
    ``retry_scheduled`` under a live lease (a started charge is ``charging``). Counted up to
    ``limit`` only, through ``ix_renewals_leased``, which holds just the rows in flight.

    This, not the broker's queue length, is the backpressure gauge: it is the same on every
    broker, counts messages a worker has reserved but not run, and forgets lost messages
    when their lease expires."""
    leased = (
        select(Renewal.id)
        .where(
            Renewal.lease_expires_at > now,
            Renewal.status.in_([RenewalStatus.PENDING, RenewalStatus.RETRY_SCHEDULED]),
        )
        .limit(limit)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(leased)) or 0


@dataclass(frozen=True, slots=True)
class Materialised:
    subscriptions: int  # found due and locked
    created: list[int]  # new renewals' ids


def materialise_due(
    session: Session, *, now: datetime, settings: Settings, limit: int = BATCH
) -> Materialised:
    """Create the renewal of up to ``limit`` subscriptions whose next period has started.

    Set-based: the due rows are read as plain tuples (locked, SKIP LOCKED on PostgreSQL),
    the catch-up policy picks each one's period in Python (calendar arithmetic that neither
    database does the same way), then one INSERT creates the renewals with their audit rows
    in one more statement, and one UPDATE moves the subscriptions on. The claim step picks
    the new renewals up.
    """
    due = session.execute(
        select(
            Subscription.id,
            Subscription.anchor,
            Subscription.interval,
            Subscription.interval_count,
            Subscription.next_period_index,
            Subscription.cancel_at_period_end,
            Subscription.amount,
            Subscription.currency,
            Subscription.pending_amount,
            Subscription.pending_from_index,
        )
        .where(Subscription.status == SubscriptionStatus.ACTIVE)
        .where(Subscription.next_renewal_at <= now)
        .order_by(Subscription.next_renewal_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    rows: list[dict[str, object]] = []
    moves: list[tuple[int, int, datetime]] = []  # (id, next_period_index, next_renewal_at)
    ending: list[int] = []
    changed: list[int] = []  # a pending change of price applies from this period on
    policy = CatchUpPolicy(settings.catch_up)
    for (
        sub_id,
        anchor,
        interval,
        count,
        next_index,
        cancel_at_end,
        amount,
        currency,
        pending_amount,
        pending_from,
    ) in due:
        last = next_index - 1 if next_index > 0 else None
        index = next_period_to_charge(
            anchor, interval, count, now=now, last_settled_index=last, policy=policy
        )
        if index is None:  # next_renewal_at was ahead of the schedule; realign it.
            moves.append((sub_id, next_index, period_start(anchor, interval, count, next_index)))
            continue
        if cancel_at_end:
            ending.append(sub_id)
            continue
        chosen = period(anchor, interval, count, index)
        skipped = list(skipped_period_indices(last, index))
        change: dict[str, object] = {}
        price = amount
        if pending_from is not None and index >= pending_from:
            changed.append(sub_id)
            if pending_amount is not None and pending_amount != amount:
                change = {"amount_changed": [amount, pending_amount]}
                price = pending_amount
        rows.append(
            {
                "subscription_id": sub_id,
                "period_index": chosen.index,
                "period_start": chosen.start,
                "period_end": chosen.end,
                "amount": price,
                "currency": currency,
                "audit_details": {
                    "period_index": index,
                    "period_start": chosen.start.isoformat(),
                    **({"skipped_periods": skipped} if skipped else {}),
                    **change,
                },
            }
        )
        moves.append((sub_id, index + 1, chosen.end))
    transitions.move_subscriptions(
        session,
        ending,
        SubscriptionEvent.CANCELED_BY_OPERATOR,
        before=SubscriptionStatus.ACTIVE,
        now=now,
        actor=ACTOR,
        reason="canceled at the end of the period",
    )
    created = transitions.create_renewals(session, rows, now=now, actor=ACTOR)
    _move_schedules(session, moves)
    _apply_pending_changes(session, changed)
    return Materialised(len(due), created)


def _apply_pending_changes(session: Session, ids: Sequence[int]) -> None:
    """A change of price asked for through the API becomes the subscription's own with the
    first period it applies to (just materialised at that price, under the same row locks):
    one statement for the batch. Periods materialised before keep their amount."""
    if not ids:
        return
    session.execute(
        update(Subscription)
        .where(Subscription.id.in_(ids))
        .values(
            amount=func.coalesce(Subscription.pending_amount, Subscription.amount),
            price_id=func.coalesce(Subscription.pending_price_id, Subscription.price_id),
            pending_amount=None,
            pending_price_id=None,
            pending_from_index=None,
        )
        .execution_options(synchronize_session=False)
    )


def _move_schedules(session: Session, moves: Sequence[tuple[int, int, datetime]]) -> None:
    """Each subscription's next period, in one statement: UPDATE … FROM (VALUES …) on
    PostgreSQL; SQLite cannot name a VALUES list's columns, and runs in-process anyway, so
    there it is one prepared UPDATE executed for every row."""
    if not moves:
        return
    if session.get_bind().dialect.name == "postgresql":
        due = values(
            column("id", Integer),
            column("next_period_index", Integer),
            column("next_renewal_at", UTCDateTime()),
            name="due",
        ).data(list(moves))
        session.execute(
            update(Subscription)
            .where(Subscription.id == due.c.id)
            .values(
                next_period_index=due.c.next_period_index, next_renewal_at=due.c.next_renewal_at
            )
            .execution_options(synchronize_session=False)
        )
        return
    # One statement, executemany, on the table: the ORM's bulk path costs more per row.
    table = cast(Table, Subscription.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("sub_id"))
        .values(next_period_index=bindparam("index"), next_renewal_at=bindparam("at")),
        [{"sub_id": sub_id, "index": index, "at": at} for sub_id, index, at in moves],
    )


Leased = type[Renewal] | type[OutboxMessage] | type[InboxEvent]


def lease_rows(
    session: Session,
    model: Leased,
    *conditions: ColumnElement[bool],
    now: datetime,
    settings: Settings,
    order_by: ColumnElement[Any] | InstrumentedAttribute[Any] | None = None,
    limit: int = BATCH,
) -> list[int]:
    """Lease up to ``limit`` rows of ``model`` that match ``conditions`` and hold no live lease.

    The lease keeps a second sweep from enqueueing the same work again, and its expiry is how
    work whose message was lost comes back.
    """
    query = (
        select(model.id)
        .where(*conditions)
        .where(or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now))
        .limit(limit)
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
    session: Session, *, now: datetime, settings: Settings, limit: int = BATCH
) -> list[tuple[int, Work]]:
    """Lease up to ``limit`` renewals whose one next job is due, with that job: first those
    whose earlier claim expired (a lost message), then unleased ones, oldest first.

    Two queries rather than one with ``lease IS NULL OR lease <= now``: each matches one
    partial index (``ix_renewals_leased``, ``ix_renewals_claimable``), so rows claimed and
    not yet started are never scanned again, however many there are. While charges are
    halted (``renewals halt``) no charge is claimed: those renewals keep their due time and
    are claimed after unhalt; every other job goes on.
    """
    if limit <= 0:
        return []
    halted = [Renewal.wake != Work.CHARGE] if is_halted(session) else []
    expired = _lock_due(session, now, limit, Renewal.lease_expires_at <= now, *halted)
    fresh = _lock_due(
        session,
        now,
        limit - len(expired),
        Renewal.lease_expires_at.is_(None),  # with wake IS NOT NULL: CLAIMABLE_SQL
        *halted,
    )
    due = [(renewal_id, work) for renewal_id, work in [*expired, *fresh] if work]
    if due:
        session.execute(
            update(Renewal)
            .where(Renewal.id.in_([renewal_id for renewal_id, _ in due]))
            .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
            .execution_options(synchronize_session=False)
        )
        crash_point("before_claim_commit")
    return due


def _lock_due(
    session: Session, now: datetime, limit: int, *conditions: ColumnElement[bool]
) -> list[tuple[int, Work | None]]:
    if limit <= 0:
        return []
    query = (
        select(Renewal.id, Renewal.wake)
        .where(*conditions)
        .where(Renewal.wake.is_not(None), Renewal.wake_at <= now)
        .order_by(Renewal.wake_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(query).tuples())


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
