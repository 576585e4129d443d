"""Merchant events: written in the transaction of the change they tell, and moved through
the outbox statuses as they are delivered (docs/merchant-webhooks.md).

Writing one is a plain row (:func:`merchant_event_row`) and an INSERT, so a set-based path
can fold it into its own statement. Nothing is written unless the engine was enabled for
them (:func:`enable_merchant_events`, which the worker's runtime calls when
``RENEWALS_MERCHANT_WEBHOOK_URL`` is set): without a receiver the table would only grow.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.orm import Session

from renewals.domain.merchant_events import (
    MerchantEventType,
    encode_body,
    iso,
    new_event_id,
    subscription_event_type,
)
from renewals.domain.states import (
    OutboxEvent,
    OutboxStatus,
    SubscriptionEvent,
    SubscriptionStatus,
)
from renewals.models import MerchantEvent, Renewal, Subscription
from renewals.transitions._audit import write
from renewals.transitions.messages import expire_outbox_leases, step_outbox_row

_enabled: weakref.WeakSet[Engine] = weakref.WeakSet()


def enable_merchant_events(engine: Engine, enabled: bool = True) -> None:
    """Write merchant events in every transaction on ``engine`` (or stop writing them)."""
    if enabled:
        _enabled.add(engine)
    else:
        _enabled.discard(engine)


def merchant_events_enabled(session: Session) -> bool:
    bind = session.get_bind()
    return (bind if isinstance(bind, Engine) else bind.engine) in _enabled


# ------------------------------------------------------------------------------ writing


def merchant_event_row(
    *,
    event_type: MerchantEventType,
    subscription_id: int,
    renewal_id: int | None,
    data: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The ``merchant_events`` row of one new event, pending and due now."""
    event_id = new_event_id()
    return {
        "event_id": event_id,
        "type": event_type.value,
        "subscription_id": subscription_id,
        "renewal_id": renewal_id,
        "body": encode_body(event_id, event_type, now, data),
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def insert_merchant_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        # The table, not the mapped class: no ORM bookkeeping, one executemany.
        session.execute(insert(cast(Table, MerchantEvent.__table__)), list(rows))


def subscription_part(
    *,
    subscription_id: int,
    status: str,
    amount: int,
    currency: str,
    current_period_start: datetime | None,
    current_period_end: datetime | None,
    previous_status: str | None = None,
) -> dict[str, Any]:
    part: dict[str, Any] = {"id": subscription_id, "status": str(status)}
    if previous_status is not None:
        part["previous_status"] = str(previous_status)
    return part | {
        "amount": amount,
        "currency": currency,
        "current_period_start": iso(current_period_start),
        "current_period_end": iso(current_period_end),
    }


def renewal_part(renewal: Renewal) -> dict[str, Any]:
    return {
        "id": renewal.id,
        "status": str(renewal.status),
        "period_start": iso(renewal.period_start),
        "period_end": iso(renewal.period_end),
        "amount": renewal.amount,
        "currency": renewal.currency,
        "payment_id": renewal.payment_intent_id,
        "refunded_amount": renewal.refunded_amount,
        "dispute_id": renewal.dispute_id,
        "dispute_status": renewal.dispute_status,
    }


def _newest_renewal(session: Session, subscription_id: int) -> Renewal | None:
    # An object the caller changed in this transaction comes back as it is in memory.
    return session.scalars(
        select(Renewal)
        .where(Renewal.subscription_id == subscription_id)
        .order_by(Renewal.period_start.desc())
        .limit(1)
    ).first()


def tell_subscription_change(
    session: Session,
    sub: Subscription,
    event: SubscriptionEvent,
    *,
    before: SubscriptionStatus,
    after: SubscriptionStatus,
    now: datetime,
    renewal: Renewal | None = None,
) -> None:
    """The event a subscription transition tells the merchant, if any; the renewal it names
    is ``renewal`` or else the subscription's newest (the one whose outcome moved it)."""
    event_type = subscription_event_type(event, before, after)
    if event_type is None or not merchant_events_enabled(session):
        return
    renewal = renewal if renewal is not None else _newest_renewal(session, sub.id)
    data = {
        "subscription": subscription_part(
            subscription_id=sub.id,
            status=after,
            previous_status=before,
            amount=sub.amount,
            currency=sub.currency,
            current_period_start=sub.current_period_start,
            current_period_end=sub.current_period_end,
        ),
        "renewal": renewal_part(renewal) if renewal is not None else None,
        "occurred_at": iso(now),
    }
    insert_merchant_events(
        session,
        [
            merchant_event_row(
                event_type=event_type,
                subscription_id=sub.id,
                renewal_id=renewal.id if renewal is not None else None,
                data=data,
                now=now,
            )
        ],
    )


def tell_subscriptions_changed(
    session: Session,
    moved: Sequence[tuple[int, int, str, datetime | None, datetime | None]],
    event: SubscriptionEvent,
    *,
    before: SubscriptionStatus,
    after: SubscriptionStatus,
    now: datetime,
) -> None:
    """A batch's events in one statement; ``moved`` is ``(id, amount, currency,
    current_period_start, current_period_end)`` per subscription. Batches move
    subscriptions without a renewal in hand (the end of a period), so none is named."""
    event_type = subscription_event_type(event, before, after)
    if event_type is None or not moved:
        return
    insert_merchant_events(
        session,
        [
            merchant_event_row(
                event_type=event_type,
                subscription_id=sub_id,
                renewal_id=None,
                data={
                    "subscription": subscription_part(
                        subscription_id=sub_id,
                        status=after,
                        previous_status=before,
                        amount=amount,
                        currency=currency,
                        current_period_start=start,
                        current_period_end=end,
                    ),
                    "renewal": None,
                    "occurred_at": iso(now),
                },
                now=now,
            )
            for sub_id, amount, currency, start, end in moved
        ],
    )


# ----------------------------------------------------------------------------- delivery


def move_merchant_event(
    session: Session,
    row: MerchantEvent,
    event: OutboxEvent,
    *,
    now: datetime,
    actor: str,
    lease_seconds: int | None = None,
    retry_at: datetime | None = None,
    error: str | None = None,
    http_status: int | None = None,
) -> None:
    """One step of a delivery: claimed (a send begins), sent, deferred to ``retry_at`` or
    rejected (failed for good), with its audit row."""
    before = step_outbox_row(
        row, event, now=now, lease_seconds=lease_seconds, retry_at=retry_at, error=error
    )
    if event is not OutboxEvent.CLAIMED:
        row.last_http_status = http_status
    write(
        session,
        now=now,
        actor=actor,
        action=f"merchant_event_{event}",
        subscription_id=row.subscription_id,
        renewal_id=row.renewal_id,
        entity="merchant_event",
        entity_id=row.id,
        from_status=before,
        to_status=row.status,
        reason=error,
        details={"type": row.type, "event_id": row.event_id, "attempt": row.attempts},
    )


def expire_merchant_event_leases(session: Session, *, now: datetime) -> list[int]:
    """Events left ``sending`` by a worker that died go back to ``pending``, due now: the
    merchant may then receive that event twice (same id, same body), never not at all."""
    return expire_outbox_leases(
        session, MerchantEvent, now=now, action="merchant_event", entity="merchant_event"
    )
