"""N customers, each with a saved card on the sandbox and a subscription due now."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.models.db import unit_of_work
from renewals.sandbox.cards import TEST_CARDS, ChargeBehaviour
from renewals.sandbox.client import SandboxCards
from renewals.services.subscriptions import SavedCard, create_subscription

SUCCEEDS = "4242424242424242"
# Every 50th customer gets one of the sandbox's behaviour cards, so outcomes come from the
# card as well as from the sandbox-wide mix.
SPECIAL = [
    number
    for number, behaviour in TEST_CARDS.items()
    if behaviour
    in (
        ChargeBehaviour.AUTHENTICATION_REQUIRED,
        ChargeBehaviour.CARD_DECLINED,
        ChargeBehaviour.DROPS_AFTER_CHARGE,
        ChargeBehaviour.FAILS_AFTER_CHARGE,
    )
]
BATCH = 100


def card_number(n: int) -> str:
    return SPECIAL[(n // 50) % len(SPECIAL)] if n % 50 == 49 else SUCCEEDS


def email_of(n: int, run: str) -> str:
    return f"chaos{n}.{run}@example.com"


def seed(engine: Engine, settings: Settings, count: int, run: str) -> list[str]:
    """Create ``count`` subscriptions due now; returns the customers' email addresses."""
    emails = [email_of(n, run) for n in range(count)]
    api_key = settings.faststar_api_key.get_secret_value()
    with httpx.Client(timeout=30.0, limits=httpx.Limits(max_connections=16)) as http:
        cards = SandboxCards(settings.faststar_base_url, api_key, client=http)

        def save(n: int) -> SavedCard:
            number = card_number(n)
            cus, pm = cards.save_card(email=emails[n], name=f"Chaos {n}", number=number)
            return SavedCard(cus, pm, "visa", number[-4:], 12, 2030)

        with ThreadPoolExecutor(16) as pool:
            saved = list(pool.map(save, range(count)))
    now = datetime.now(UTC)
    for start in range(0, count, BATCH):
        with unit_of_work(engine) as session:
            for n in range(start, min(start + BATCH, count)):
                create_subscription(
                    session,
                    now=now,
                    settings=settings,
                    email=emails[n],
                    name=f"Chaos {n}",
                    card=saved[n],
                    amount=1999 if n % 3 else 4900,
                    currency="USD" if n % 4 else "EUR",
                    interval="month",
                    interval_count=1,
                    renews_at=now,
                )
    return emails
