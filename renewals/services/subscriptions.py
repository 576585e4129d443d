"""Creating subscriptions and showing them (the shape ``--json`` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.money import Money
from renewals.domain.periods import Interval
from renewals.domain.states import SubscriptionStatus
from renewals.domain.subscription_input import SubscriptionInputError, check_email, check_terms
from renewals.models import ChargeAttempt, Customer, PaymentMethod, Renewal, Subscription
from renewals.services.views import summaries


@dataclass(frozen=True, slots=True)
class SavedCard:
    """A masked card as FastStar returned it on attach."""

    customer_id: str  # cus_…
    payment_method_id: str  # pm_…
    brand: str
    last4: str
    exp_month: int
    exp_year: int


def check_subscription_input(
    *,
    settings: Settings,
    email: str,
    amount: int,
    currency: str,
    interval: str,
    interval_count: int,
    renews_at: datetime,
    price_id: str | None,
) -> tuple[Money, Interval]:
    """Every check a new subscription must pass, run before anything is created anywhere
    (the CLI calls it before FastStar is asked to save a card, so a refusal leaves no
    orphan customer); the same checks as an import row or the API's (see
    :mod:`renewals.domain.subscription_input`). Raises :class:`SubscriptionInputError`."""
    check_email(email)
    return check_terms(
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        renews_at=renews_at,
        price_id=price_id,
        max_amount=settings.max_charge_amount,
        renews_at_field="renews-at",
    )


def create_subscription(
    session: Session,
    *,
    now: datetime,
    settings: Settings,
    email: str,
    name: str | None,
    card: SavedCard,
    amount: int,
    currency: str,
    interval: str,
    interval_count: int,
    renews_at: datetime,
    price_id: str | None = None,
) -> Subscription:
    """Store the customer, the card and a subscription whose first renewal is ``renews_at``.

    Period *n* then starts at ``renews_at + n intervals``: the billing anchor.
    """
    money, unit = check_subscription_input(
        settings=settings,
        email=email,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        renews_at=renews_at,
        price_id=price_id,
    )

    customer = session.scalar(select(Customer).where(Customer.faststar_id == card.customer_id))
    if customer is None:
        customer = Customer(faststar_id=card.customer_id, email=email, name=name, created_at=now)
        session.add(customer)
        session.flush()
    method = session.scalar(
        select(PaymentMethod).where(PaymentMethod.faststar_id == card.payment_method_id)
    )
    if method is None:
        method = PaymentMethod(
            faststar_id=card.payment_method_id,
            customer_id=customer.id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            details_fetched_at=now,
            created_at=now,
        )
        session.add(method)
        session.flush()
    elif method.customer_id != customer.id:
        raise SubscriptionInputError("that payment method belongs to another customer")
    sub_id = transitions.create_subscription(
        session,
        now=now,
        actor="cli",
        customer_id=customer.id,
        payment_method_id=method.id,
        amount=money.amount,
        currency=money.currency,
        interval=unit,
        interval_count=interval_count,
        anchor=renews_at,
        price_id=price_id,
        cancel_at_period_end=False,
        next_period_index=0,
        next_renewal_at=renews_at,
    )
    sub = session.get_one(Subscription, sub_id)
    return sub


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def subscription_views(session: Session, subscriptions: list[Subscription]) -> list[dict[str, Any]]:
    """The JSON shape of ``subscriptions show/list --json``, in three queries for any number."""
    if not subscriptions:
        return []
    ids = [s.id for s in subscriptions]
    faststar_ids = {
        sub_id: (customer_id, payment_method_id)
        for sub_id, customer_id, payment_method_id in session.execute(
            select(Subscription.id, Customer.faststar_id, PaymentMethod.faststar_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
            .where(Subscription.id.in_(ids))
        ).tuples()
    }
    renewals = session.scalars(
        select(Renewal).where(Renewal.subscription_id.in_(ids)).order_by(Renewal.period_start)
    ).all()
    attempts = session.scalars(
        select(ChargeAttempt)
        .where(ChargeAttempt.renewal_id.in_([r.id for r in renewals]))
        .order_by(ChargeAttempt.number)
    ).all()
    by_renewal: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_renewal.setdefault(a.renewal_id, []).append(
            {
                "number": a.number,
                "status": a.status.value,
                "idempotency_key": a.idempotency_key,
                "payment_intent_id": a.payment_intent_id,
                "decline_code": a.decline_code,
                "sends": a.sends,
                "error": a.error,
            }
        )
    by_sub: dict[int, list[dict[str, Any]]] = {}
    for r in renewals:
        by_sub.setdefault(r.subscription_id, []).append(
            {
                "id": r.id,
                "period_index": r.period_index,
                "period_start": _iso(r.period_start),
                "period_end": _iso(r.period_end),
                "status": r.status.value,
                "amount": r.amount,
                "currency": r.currency,
                "payment_intent_id": r.payment_intent_id,
                "checkout_session_id": r.checkout_session_id,
                "checkout_url": r.checkout_url,
                "next_action": r.wake.value if r.wake else None,
                "next_action_at": _iso(r.wake_at),
                "last_error": r.last_error,
                "refunded_amount": r.refunded_amount,
                "dispute_status": r.dispute_status,
                "attempts": by_renewal.get(r.id, []),
            }
        )
    summary = summaries(session, subscriptions)
    return [
        {
            "id": s.id,
            "status": s.status.value,
            "customer_id": faststar_ids[s.id][0],
            "payment_method_id": faststar_ids[s.id][1],
            "amount": s.amount,
            "currency": s.currency,
            "interval": s.interval.value,
            "interval_count": s.interval_count,
            "anchor": _iso(s.anchor),
            "next_renewal_at": _iso(s.next_renewal_at),
            "current_period_start": _iso(s.current_period_start),
            "current_period_end": _iso(s.current_period_end),
            "price_id": s.price_id,
            "cancel_at_period_end": s.cancel_at_period_end,
            **summary[s.id],  # amount_display, next_action(_at), decline_reason
            "renewals": by_sub.get(s.id, []),
        }
        for s in subscriptions
    ]


def list_subscriptions(session: Session, status: str | None = None) -> list[Subscription]:
    query = select(Subscription).order_by(Subscription.id)
    if status is not None:
        query = query.where(Subscription.status == SubscriptionStatus(status))
    return list(session.scalars(query))
