"""Factories: real saved cards on the sandbox, real subscriptions through the service."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import Subscription
from renewals.models.db import unit_of_work
from renewals.sandbox.client import save_card
from renewals.services.subscriptions import SavedCard, create_subscription

CARDS = {
    "success": "4242424242424242",
    "sca": "4000002760003184",
    "declined": "4000000000000002",
    "insufficient_funds": "4000000000009995",
    "expired": "4000000000000069",
    "error_500": "4000000000000119",
    "lost_response": "4000000000000341",
    "error_after_charge": "4000000000003220",
}

_emails = itertools.count(1)


@dataclass
class Clock:
    """A settable clock for services that take ``now``; time travel without freezing."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def save_sandbox_card(settings: Settings, number: str) -> SavedCard:
    email = f"buyer{next(_emails)}@example.com"
    api_key = settings.faststar_api_key.get_secret_value()
    cus, pm = save_card(
        settings.faststar_base_url, api_key, email=email, name="Buyer", number=number
    )
    with FastStarClient(settings.faststar_base_url, api_key) as client:
        card = next(c for c in client.list_payment_methods(cus) if c.id == pm)
    return SavedCard(cus, pm, card.brand, card.last4, card.exp_month, card.exp_year)


def make_subscription_factory(engine: Engine, settings: Settings) -> Callable[..., int]:
    def make(
        card: str = "success",
        *,
        amount: int = 1999,
        currency: str = "USD",
        interval: str = "month",
        interval_count: int = 1,
        renews_at: datetime,
        now: datetime | None = None,
    ) -> int:
        saved = save_sandbox_card(settings, CARDS.get(card, card))
        with unit_of_work(engine) as session:
            sub: Subscription = create_subscription(
                session,
                now=now or renews_at,
                settings=settings,
                email=f"buyer{next(_emails)}@example.com",
                name="Buyer",
                card=saved,
                amount=amount,
                currency=currency,
                interval=interval,
                interval_count=interval_count,
                renews_at=renews_at,
            )
            return sub.id

    return make
