"""Many due subscriptions, cheaply: rows inserted with SQLAlchemy Core, no sandbox call.

For tests of the sweep's materialise and claim, where no charge is made. The card and
customer ids are made up; a test that starts a charge (step 1 only) finds them valid.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from renewals.domain.states import RenewalStatus
from renewals.models import Customer, PaymentMethod, Renewal, Subscription
from renewals.models.db import unit_of_work


def insert_due_subscriptions(engine: Engine, count: int, *, now: datetime) -> list[int]:
    """``count`` active monthly subscriptions whose first period started a day ago."""
    anchor = now - timedelta(days=1)
    with unit_of_work(engine) as session:
        customer_id = session.scalar(
            insert(Customer)
            .values(faststar_id=f"cus_{uuid.uuid4().hex}", email="due@example.com", created_at=now)
            .returning(Customer.id)
        )
        card_id = session.scalar(
            insert(PaymentMethod)
            .values(
                faststar_id=f"pm_{uuid.uuid4().hex}",
                customer_id=customer_id,
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=now.year + 3,
                created_at=now,
            )
            .returning(PaymentMethod.id)
        )
        rows = [
            {
                "customer_id": customer_id,
                "payment_method_id": card_id,
                "amount": 1999,
                "currency": "USD",
                "interval": "month",
                "interval_count": 1,
                "anchor": anchor,
                "status": "active",
                "status_changed_at": anchor,
                "cancel_at_period_end": False,
                "next_period_index": 0,
                "next_renewal_at": anchor,
                "created_at": anchor,
            }
            for _ in range(count)
        ]
        session.execute(insert(Subscription), rows)
        return list(session.scalars(select(Subscription.id).order_by(Subscription.id)))


def renewal_ids(engine: Engine) -> list[int]:
    with unit_of_work(engine) as session:
        return list(session.scalars(select(Renewal.id).order_by(Renewal.id)))


def leased_renewals(engine: Engine, now: datetime) -> int:
    """Renewals under a live lease (claimed), whatever their status."""
    with unit_of_work(engine) as session:
        return (
            session.scalar(
                select(func.count()).select_from(Renewal).where(Renewal.lease_expires_at > now)
            )
            or 0
        )


def started_renewals(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Renewal)
                .where(Renewal.status == RenewalStatus.CHARGING)
            )
            or 0
        )
