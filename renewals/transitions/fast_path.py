"""The charge's writes on PostgreSQL, each transaction's in one statement.

A paid renewal is the hot path: two transactions around the FastStar call. Through the ORM
they cost ten statements; here, with PostgreSQL's data-modifying CTEs, three:

* starting a charge: the caller's locking read (services.charge_checks), then
  :func:`start_new_attempt`: ``WITH attempt AS (INSERT …), renewal AS (UPDATE …),
  audit AS (INSERT …) SELECT …``;
* booking the answer "paid": :func:`book_paid_charge`, one statement whose first member locks
  the renewal, its in-flight attempt and its subscription *only if* they are still as the
  charge left them (``FOR UPDATE`` re-checks the conditions against the rows' latest
  versions), and whose other members write from that guard's rows. A lost race (the sweep
  expired the renewal to ``unknown``, an operator paused the subscription) leaves the guard
  empty, so nothing at all is written and the caller records the outcome the careful way.

The rows written are exactly the ORM path's (tests/engine/test_fast_path.py compares them):
the transition tables, the wake columns (:func:`~renewals.transitions.billing.wake_values`),
the audit rows (:func:`~renewals.transitions._audit.audit_row`) and the outbox row
(:func:`~renewals.transitions.messages.pending_message`) come from the same functions.

SQLite has no data-modifying CTEs: :func:`supported` is the one dialect switch, and SQLite
keeps the ORM path. A further write (an outbox row for merchants, say) is one more member:
an ``INSERT … SELECT … FROM guard`` added to :class:`_Statement`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    FromClause,
    Table,
    case,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from renewals.domain.merchant_events import iso, subscription_event_type
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
from renewals.models import AuditEvent, ChargeAttempt, OutboxMessage, Renewal, Subscription
from renewals.transitions._audit import audit_row
from renewals.transitions.billing import wake_values
from renewals.transitions.merchant_events import (
    insert_merchant_events,
    merchant_event_row,
    merchant_events_enabled,
    subscription_part,
)
from renewals.transitions.messages import pending_message

# The tables, not the mapped classes: no ORM bookkeeping, and nothing in the session's
# identity map pretends to know these rows afterwards.
_RENEWALS = cast(Table, Renewal.__table__)
_ATTEMPTS = cast(Table, ChargeAttempt.__table__)
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_AUDIT = cast(Table, AuditEvent.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


def supported(session: Session) -> bool:
    """Whether this database takes the one-statement writes (PostgreSQL does, SQLite not)."""
    return session.get_bind().dialect.name == "postgresql"


class FastPathError(RuntimeError):
    """A one-statement write touched other rows than its guard promised: a bug. Raised so
    the transaction rolls back; the work is then found again by the sweep."""


def _select_row(table: Table, row: Mapping[str, Any]) -> list[ColumnElement[Any]]:
    """``row`` as the columns of a SELECT feeding ``INSERT INTO table``: Python values bound
    with the column's own type (so JSON, enums and UTC instants are stored exactly as the
    ORM stores them), SQL expressions (another member's column) as they are."""
    return [
        (value if isinstance(value, ColumnElement) else literal(value, table.c[name].type)).label(
            name
        )
        for name, value in row.items()
    ]


def _insert_from(
    table: Table,
    name: str,
    row: Mapping[str, Any],
    source: FromClause,
    *,
    where: ColumnElement[bool] | None = None,
) -> CTE:
    """``name AS (INSERT INTO table SELECT row FROM source [WHERE …] RETURNING id)``: one row
    per row of ``source``, so none when the guard found nothing."""
    query = select(*_select_row(table, row)).select_from(source)
    if where is not None:
        query = query.where(where)
    return insert(table).from_select(list(row), query).returning(table.c.id).cte(name)


@dataclass
class _Statement:
    """One ``WITH … SELECT``: a first member whose rows drive the rest, the writing members,
    and the main SELECT's columns (always including a count of each write, checked by
    :meth:`run`)."""

    driver: CTE
    writes: list[CTE] = field(default_factory=list)
    one_row_each: list[CTE] = field(default_factory=list)

    def add(self, member: CTE, *, one_row: bool = False) -> CTE:
        self.writes.append(member)
        if one_row:
            self.one_row_each.append(member)
        return member

    def run(self, session: Session, *columns: ColumnElement[Any]) -> Any | None:
        """The main SELECT's one row (None when the driver found nothing)."""
        counts = [select(func.count()).select_from(m).scalar_subquery() for m in self.one_row_each]
        row = session.execute(
            select(*columns, *counts).select_from(self.driver).add_cte(*self.writes)
        ).one_or_none()
        if row is None:
            return None
        if any(count != 1 for count in row[len(columns) :]):
            raise FastPathError(f"expected one row per write, got {list(row[len(columns) :])}")
        return row


def start_new_attempt(
    session: Session,
    renewal: Renewal,
    event: RenewalEvent,
    *,
    number: int,
    idempotency_key: str,
    requested_by: str | None,
    now: datetime,
    actor: str,
    lease_seconds: int,
) -> int:
    """Insert the renewal's new attempt (in flight), move the renewal to ``charging`` with its
    lease, and write the audit row, in one statement; returns the attempt's id.

    The caller holds the renewal's row lock (its locking read), so there is no race to guard
    against; the renewal's status is matched all the same and the write checked."""
    before = renewal.status
    after = RENEWAL_TRANSITIONS.apply(before, event)
    attempt = (
        insert(_ATTEMPTS)
        .values(
            renewal_id=renewal.id,
            number=number,
            idempotency_key=idempotency_key,
            status=AttemptStatus.IN_FLIGHT,
            amount=renewal.amount,
            currency=renewal.currency,
            sends=1,
            checks=0,
            requested_by=requested_by,
            created_at=now,
            sent_at=now,
        )
        .returning(_ATTEMPTS.c.id)
        .cte("attempt")
    )
    statement = _Statement(attempt)
    statement.add(
        update(_RENEWALS)
        .where(_RENEWALS.c.id == renewal.id, _RENEWALS.c.status == before)
        .values(
            status=after,
            retry_requested_by=None,
            **wake_values(None, now=now, lease_seconds=lease_seconds),
        )
        .returning(_RENEWALS.c.id)
        .cte("renewal"),
        one_row=True,
    )
    statement.add(
        _insert_from(
            _AUDIT,
            "audit",
            {
                **audit_row(
                    now=now,
                    actor=actor,
                    action=f"renewal_{event}",
                    subscription_id=renewal.subscription_id,
                    renewal_id=renewal.id,
                    from_status=before,
                    to_status=after,
                    details={"attempt_number": number, "send": 1},
                ),
                "attempt_id": attempt.c.id,
            },
            attempt,
        ),
        one_row=True,
    )
    row = statement.run(session, attempt.c.id)
    if row is None:
        raise FastPathError("the new attempt was not inserted")
    return int(row[0])


@dataclass(frozen=True, slots=True)
class Booked:
    """The payment is booked; ``receipt_id`` is the queued receipt (None: receipts off, or
    that receipt was queued before)."""

    receipt_id: int | None


def book_paid_charge(
    session: Session,
    *,
    renewal_id: int,
    attempt_id: int,
    payment_intent_id: str,
    now: datetime,
    actor: str,
    receipt: Mapping[str, Any] | None,
) -> Booked | None:
    """Book the answer "paid" to an attempt still in flight, in one statement: the attempt
    and the renewal succeed with the payment id, the renewal's period becomes the
    subscription's current one (never moving it back), the subscription moves on, the audit
    rows and ``receipt`` (outbox values, or None) are written.

    None when the renewal is no longer ``charging`` with this attempt in flight, or its
    subscription no longer accepts the payment's transition: nothing was written, and the
    caller records the outcome with the row-by-row path, which knows every such case.
    """
    r, a, s = _RENEWALS, _ATTEMPTS, _SUBSCRIPTIONS
    renewal_event, attempt_event = RenewalEvent.CHARGE_SUCCEEDED, AttemptEvent.CHARGE_SUCCEEDED
    sub_event = SubscriptionEvent.CHARGE_SUCCEEDED
    renewal_after = RENEWAL_TRANSITIONS.apply(RenewalStatus.CHARGING, renewal_event)
    attempt_after = ATTEMPT_TRANSITIONS.apply(AttemptStatus.IN_FLIGHT, attempt_event)
    sub_moves = {
        before: SUBSCRIPTION_TRANSITIONS.apply(before, sub_event)
        for before in SubscriptionStatus
        if SUBSCRIPTION_TRANSITIONS.allows(before, sub_event)
    }
    guard = (
        select(
            r.c.id,
            r.c.subscription_id,
            r.c.period_start,
            r.c.period_end,
            r.c.amount,
            r.c.currency,
            s.c.status.label("subscription_status"),
        )
        .join(s, s.c.id == r.c.subscription_id)
        .join(a, a.c.renewal_id == r.c.id)
        .where(
            r.c.id == renewal_id,
            r.c.status == RenewalStatus.CHARGING,
            a.c.id == attempt_id,
            a.c.status == AttemptStatus.IN_FLIGHT,
            s.c.status.in_(list(sub_moves)),
        )
        # Locks all three, and re-checks these conditions against their latest versions
        # (READ COMMITTED's rule for locking reads): the writes below run only on rows
        # that are, at this instant, as the charge left them.
        .with_for_update(of=[r, s, a])
        .cte("guard")
    )
    sub_before = guard.c.subscription_status
    statement = _Statement(guard)
    statement.add(
        update(r)
        .where(r.c.id == guard.c.id)
        .values(
            status=renewal_after,
            payment_intent_id=payment_intent_id,
            last_error=None,
            **wake_values(None, now=now),
        )
        .returning(r.c.id)
        .cte("renewal"),
        one_row=True,
    )
    statement.add(
        update(a)
        .where(a.c.id == attempt_id, a.c.renewal_id == guard.c.id)
        .values(status=attempt_after, payment_intent_id=payment_intent_id, finished_at=now)
        .returning(a.c.id)
        .cte("attempt"),
        one_row=True,
    )
    # The paid period becomes the current one; a late, older period never moves it back.
    newer = or_(s.c.current_period_start.is_(None), s.c.current_period_start < guard.c.period_start)
    changed = {before: after for before, after in sub_moves.items() if after != before}
    subscription = statement.add(
        update(s)
        .where(s.c.id == guard.c.subscription_id)
        .values(
            status=case(
                {before: literal(after, s.c.status.type) for before, after in sub_moves.items()},
                value=sub_before,
            ),
            status_changed_at=case(
                *[
                    (sub_before == before, literal(now, s.c.status_changed_at.type))
                    for before in changed
                ],
                else_=s.c.status_changed_at,
            )
            if changed
            else s.c.status_changed_at,
            current_period_start=case(
                (newer, guard.c.period_start), else_=s.c.current_period_start
            ),
            current_period_end=case((newer, guard.c.period_end), else_=s.c.current_period_end),
        )
        .returning(
            s.c.id,
            s.c.status,
            s.c.amount,
            s.c.currency,
            s.c.current_period_start,
            s.c.current_period_end,
        )
        .cte("subscription"),
        one_row=True,
    )
    renewal_audit = statement.add(
        _insert_from(
            _AUDIT,
            "renewal_audit",
            {
                **audit_row(
                    now=now,
                    actor=actor,
                    action=f"renewal_{renewal_event}",
                    renewal_id=renewal_id,
                    attempt_id=attempt_id,
                    from_status=RenewalStatus.CHARGING,
                    to_status=renewal_after,
                    details={
                        "attempt": [str(AttemptStatus.IN_FLIGHT), str(attempt_after)],
                        "payment_intent_id": payment_intent_id,
                    },
                ),
                "subscription_id": guard.c.subscription_id,
            },
            guard,
        ),
        one_row=True,
    )
    for n, (before, after) in enumerate(changed.items()):
        # Read from the renewal's audit row so that it is written after it, as on the ORM path.
        statement.add(
            _insert_from(
                _AUDIT,
                f"subscription_audit_{n}",
                {
                    **audit_row(
                        now=now,
                        actor=actor,
                        action=f"subscription_{sub_event}",
                        from_status=before,
                        to_status=after,
                    ),
                    "subscription_id": guard.c.subscription_id,
                },
                guard.join(renewal_audit, true()),
                where=sub_before == before,
            )
        )
    receipt_id: ColumnElement[Any] = null()
    if receipt is not None:
        queued = statement.add(
            pg_insert(_OUTBOX)
            .from_select(
                list(pending_message(now, dict(receipt))),
                select(*_select_row(_OUTBOX, pending_message(now, dict(receipt)))).select_from(
                    guard
                ),
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(_OUTBOX.c.id)
            .cte("receipt")
        )
        receipt_id = select(queued.c.id).scalar_subquery()
    told = merchant_events_enabled(session)
    subscription_after = [
        select(column).scalar_subquery()
        for column in (
            subscription.c.status,
            subscription.c.amount,
            subscription.c.currency,
            subscription.c.current_period_start,
            subscription.c.current_period_end,
        )
    ]
    row = statement.run(
        session,
        guard.c.id,
        receipt_id,
        guard.c.subscription_id,
        guard.c.period_start,
        guard.c.period_end,
        guard.c.amount,
        guard.c.currency,
        sub_before,
        *(subscription_after if told else []),
    )
    if row is None:
        return None
    if told:
        # The merchant hears "renewed" in the same transaction: one more statement, only
        # when a merchant endpoint is configured (the body is built here, in Python, with
        # the values the statement returned, exactly as the careful path builds it).
        _tell_renewed(
            session, row, renewal_status=renewal_after, payment_intent_id=payment_intent_id, now=now
        )
    return Booked(int(row[1]) if row[1] is not None else None)


def _tell_renewed(
    session: Session,
    row: Any,
    *,
    renewal_status: RenewalStatus,
    payment_intent_id: str,
    now: datetime,
) -> None:
    (
        renewal_id,
        _receipt,
        subscription_id,
        period_start,
        period_end,
        amount,
        currency,
        before,
        status,
        sub_amount,
        sub_currency,
        current_start,
        current_end,
    ) = row[:13]
    event_type = subscription_event_type(
        SubscriptionEvent.CHARGE_SUCCEEDED, SubscriptionStatus(before), SubscriptionStatus(status)
    )
    if event_type is None:
        return
    data = {
        "subscription": subscription_part(
            subscription_id=subscription_id,
            status=status,
            previous_status=before,
            amount=sub_amount,
            currency=sub_currency,
            current_period_start=current_start,
            current_period_end=current_end,
        ),
        # As renewal_part() reads it off the booked renewal on the careful path.
        "renewal": {
            "id": renewal_id,
            "status": str(renewal_status),
            "period_start": iso(period_start),
            "period_end": iso(period_end),
            "amount": amount,
            "currency": currency,
            "payment_id": payment_intent_id,
            "refunded_amount": None,
            "dispute_id": None,
            "dispute_status": None,
        },
        "occurred_at": iso(now),
    }
    insert_merchant_events(
        session,
        [
            merchant_event_row(
                event_type=event_type,
                subscription_id=subscription_id,
                renewal_id=renewal_id,
                data=data,
                now=now,
            )
        ],
    )
