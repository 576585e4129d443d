"""Refunds and disputes FastStar reports on a paid renewal: recorded on the renewal with
their audit row and the merchant's event, once per change (a repeated or older report
changes nothing and tells nobody)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from renewals.domain.merchant_events import MerchantEventType, iso
from renewals.models import Renewal, Subscription
from renewals.transitions._audit import write
from renewals.transitions.merchant_events import (
    insert_merchant_events,
    merchant_event_row,
    merchant_events_enabled,
    renewal_part,
    subscription_part,
)

# A closed dispute is not reopened by a late report of an earlier stage.
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "closed", "warning_closed"})


def record_refund(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    *,
    refunded_total: int | None,
    full: bool,
    now: datetime,
    actor: str,
    source_event_id: str,
) -> bool:
    """Record that ``refunded_total`` of the renewal's payment has been refunded so far
    (the whole amount when ``full`` and no total is given; None and not full: a partial
    refund of an amount FastStar did not say, recorded each time since only a new event
    reaches here). Known totals only grow, so a repeated or late report of one is a no-op;
    returns whether anything changed."""
    known = renewal.refunded_amount or 0
    total = refunded_total if refunded_total is not None else (renewal.amount if full else None)
    if total is not None and total <= known and renewal.refunded_at is not None:
        return False
    if total is not None:
        renewal.refunded_amount = min(max(total, known), renewal.amount)
    renewal.refunded_at = now
    renewal.updated_at = now
    whole = renewal.refunded_amount is not None and renewal.refunded_amount >= renewal.amount
    refund: dict[str, Any] = {
        "payment_id": renewal.payment_intent_id,
        "status": "refunded" if whole else "partially_refunded",
        "amount_refunded": renewal.refunded_amount,
        "currency": renewal.currency,
        "refunded_at": iso(now),
    }
    write(
        session,
        now=now,
        actor=actor,
        action="renewal_refunded",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        reason=f"FastStar reported a refund ({refund['status']})",
        details={**refund, "faststar_event_id": source_event_id},
    )
    _tell(session, MerchantEventType.REFUNDED, renewal, sub, "refund", refund, now=now)
    return True


def record_dispute(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    *,
    dispute_id: str,
    dispute_status: str,
    reported_at: datetime,
    now: datetime,
    actor: str,
    source_event_id: str,
) -> bool:
    """Record the dispute's status as of ``reported_at`` (FastStar's event time). A report
    already recorded, or older than the one recorded, or reopening a closed dispute with an
    earlier stage, changes nothing; returns whether anything changed."""
    same = renewal.dispute_id == dispute_id
    if same and renewal.dispute_status == dispute_status:
        return False
    if same and renewal.dispute_changed_at is not None:
        if reported_at < renewal.dispute_changed_at:
            return False
        if (
            renewal.dispute_status in CLOSED_DISPUTE_STATUSES
            and dispute_status not in CLOSED_DISPUTE_STATUSES
        ):
            return False
    before = renewal.dispute_status
    renewal.dispute_id = dispute_id
    renewal.dispute_status = dispute_status
    renewal.dispute_changed_at = reported_at
    renewal.updated_at = now
    dispute = {
        "id": dispute_id,
        "status": dispute_status,
        "payment_id": renewal.payment_intent_id,
        "changed_at": iso(reported_at),
    }
    write(
        session,
        now=now,
        actor=actor,
        action="renewal_disputed",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        reason=f"FastStar reported dispute {dispute_id}: {dispute_status}",
        details={**dispute, "previous_status": before, "faststar_event_id": source_event_id},
    )
    _tell(session, MerchantEventType.DISPUTED, renewal, sub, "dispute", dispute, now=now)
    return True


def _tell(
    session: Session,
    event_type: MerchantEventType,
    renewal: Renewal,
    sub: Subscription,
    key: str,
    part: dict[str, Any],
    *,
    now: datetime,
) -> None:
    if not merchant_events_enabled(session):
        return
    data = {
        "subscription": subscription_part(
            subscription_id=sub.id,
            status=sub.status,
            amount=sub.amount,
            currency=sub.currency,
            current_period_start=sub.current_period_start,
            current_period_end=sub.current_period_end,
        ),
        "renewal": renewal_part(renewal),
        key: part,
        "occurred_at": iso(now),
    }
    insert_merchant_events(
        session,
        [
            merchant_event_row(
                event_type=event_type,
                subscription_id=sub.id,
                renewal_id=renewal.id,
                data=data,
                now=now,
            )
        ],
    )
