"""Seeding N subscriptions in seconds: a handful of saved cards, many subscriptions each.

Rows go in with bulk INSERTs (no audit trail, no per-row ORM work) and fall due far in the
future; :func:`make_due` then moves all of them to "now" in one UPDATE, so every one falls due
at the same instant, after set-up and after the sandbox's latency is switched on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select, update

from renewals.domain.periods import Interval
from renewals.domain.states import SubscriptionStatus
from renewals.models import Customer, PaymentMethod, Subscription
from renewals.models.db import unit_of_work

AMOUNT = 1999
CHUNK = 5000


def seed_subscriptions(engine: Engine, cards: list[tuple[str, str]], count: int) -> None:
    """``count`` monthly subscriptions spread over ``cards`` (``[(cus_…, pm_…)]``)."""
    now = datetime.now(UTC)
    later = now + timedelta(days=365)
    with unit_of_work(engine) as session:
        customer_ids = []
        method_ids = []
        for n, (customer, method) in enumerate(cards):
            customer_id = session.scalar(
                insert(Customer)
                .values(faststar_id=customer, email=f"bench{n}@example.com", created_at=now)
                .returning(Customer.id)
            )
            method_id = session.scalar(
                insert(PaymentMethod)
                .values(
                    faststar_id=method,
                    customer_id=customer_id,
                    brand="visa",
                    last4="4242",
                    exp_month=12,
                    exp_year=2030,
                    created_at=now,
                )
                .returning(PaymentMethod.id)
            )
            customer_ids.append(customer_id)
            method_ids.append(method_id)
        rows = [
            {
                "customer_id": customer_ids[n % len(cards)],
                "payment_method_id": method_ids[n % len(cards)],
                "amount": AMOUNT,
                "currency": "USD",
                "interval": Interval.MONTH,
                "interval_count": 1,
                "anchor": later,
                "status": SubscriptionStatus.ACTIVE,
                "status_changed_at": now,
                "cancel_at_period_end": False,
                "next_period_index": 0,
                "next_renewal_at": later,
                "notices_period_index": 0,
                "created_at": now,
            }
            for n in range(count)
        ]
        for start in range(0, count, CHUNK):
            session.execute(insert(Subscription), rows[start : start + CHUNK])


def make_due(engine: Engine) -> datetime:
    """Every seeded subscription's first period starts now; returns that instant."""
    due = datetime.now(UTC)
    with unit_of_work(engine) as session:
        session.execute(update(Subscription).values(anchor=due, next_renewal_at=due))
    return due


def subscription_count(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return session.scalar(select(func.count()).select_from(Subscription)) or 0
