"""What ``renewals run`` shows and acts on: one row per subscription with the card it is
charged on, and the work still under way. Read-only; the demo's one action (the customer
paying on-session) goes to the sandbox, never to our tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from renewals.domain.states import InboxStatus, OutboxStatus, RenewalStatus
from renewals.models import (
    Customer,
    InboxEvent,
    OutboxMessage,
    PaymentMethod,
    Renewal,
    Subscription,
)
from renewals.services.views import summaries

ACTION_REQUIRED_EMAIL = "action_required"
BUSY_RENEWAL_STATUSES = (RenewalStatus.PENDING, RenewalStatus.CHARGING)
BUSY_OUTBOX_STATUSES = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)


@dataclass(frozen=True, slots=True)
class DemoRow:
    subscription_id: int
    email: str
    last4: str | None  # None until the card details are fetched (imported cards)
    sub_status: str
    renewal_status: str | None
    """The newest period's renewal; None before the first one is due."""
    next_action: str | None
    next_action_at: datetime | None
    checkout_session_id: str | None
    """The newest renewal's Checkout Session while it waits for the customer on-session."""
    action_email_key: str | None
    """The dedupe key of that renewal's 402 email once it has been sent."""


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work that is still moving: a demo is settled only when all of it is zero."""

    renewals: int
    emails: int
    webhooks: int


def demo_rows(session: Session) -> list[DemoRow]:
    subs = list(session.scalars(select(Subscription).order_by(Subscription.id)))
    if not subs:
        return []
    ids = [s.id for s in subs]
    cards = dict(
        session.execute(
            select(Subscription.id, PaymentMethod.last4)
            .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
            .where(Subscription.id.in_(ids))
        )
        .tuples()
        .all()
    )
    emails = dict(
        session.execute(
            select(Subscription.id, Customer.email)
            .join(Customer, Customer.id == Subscription.customer_id)
            .where(Subscription.id.in_(ids))
        )
        .tuples()
        .all()
    )
    newest: dict[int, Renewal] = {}
    for r in session.scalars(
        select(Renewal).where(Renewal.subscription_id.in_(ids)).order_by(Renewal.period_start)
    ):
        newest[r.subscription_id] = r
    waiting = [r.id for r in newest.values() if r.status == RenewalStatus.REQUIRES_ACTION]
    sent_402 = dict(
        session.execute(
            select(OutboxMessage.renewal_id, OutboxMessage.dedupe_key).where(
                OutboxMessage.renewal_id.in_(waiting),
                OutboxMessage.kind == ACTION_REQUIRED_EMAIL,
                OutboxMessage.status == OutboxStatus.SENT.value,
            )
        )
        .tuples()
        .all()
    )
    summary = summaries(session, subs)
    rows = []
    for sub in subs:
        renewal = newest.get(sub.id)
        at = summary[sub.id]["next_action_at"]
        waits = renewal is not None and renewal.status == RenewalStatus.REQUIRES_ACTION
        rows.append(
            DemoRow(
                subscription_id=sub.id,
                email=emails[sub.id],
                last4=cards[sub.id],
                sub_status=sub.status.value,
                renewal_status=renewal.status.value if renewal else None,
                next_action=summary[sub.id]["next_action"],
                next_action_at=datetime.fromisoformat(at) if at else None,
                checkout_session_id=renewal.checkout_session_id if renewal and waits else None,
                action_email_key=sent_402.get(renewal.id) if renewal and waits else None,
            )
        )
    return rows


def backlog(session: Session) -> Backlog:
    def count(model: type[object], where: ColumnElement[bool]) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(where)) or 0)

    return Backlog(
        renewals=count(Renewal, Renewal.status.in_(BUSY_RENEWAL_STATUSES)),
        emails=count(OutboxMessage, OutboxMessage.status.in_(BUSY_OUTBOX_STATUSES)),
        webhooks=count(InboxEvent, InboxEvent.status == InboxStatus.PENDING.value),
    )


def customer_emails(session: Session) -> set[str]:
    return set(session.scalars(select(Customer.email)))
