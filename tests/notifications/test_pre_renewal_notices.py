"""Before a renewal: the upcoming-renewal notice (off by default) and the warning that the saved
card expires before the renewal date. Once per period, whatever the number of sweeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Executable, event, text

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import Subscription
from renewals.models.db import unit_of_work
from renewals.sandbox.client import SandboxCards
from renewals.services.subscriptions import SavedCard, create_subscription
from renewals.services.sweep import pre_renewal_notice_query
from tests.notifications.conftest import plain_text
from tests.support.factories import Clock
from tests.support.inline import run_sweep
from tests.support.smtp import Mailbox

RENEWS_AT = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)


def _subscribe(engine: Engine, settings: Settings, faststar: FastStarClient, exp_year: int) -> int:
    api_key = settings.faststar_api_key.get_secret_value()
    cus, pm = SandboxCards(settings.faststar_base_url, api_key).save_card(
        email="jane@example.com",
        name="Jane",
        number="4242424242424242",
        exp_month=12,
        exp_year=exp_year,
    )
    card = next(c for c in faststar.list_payment_methods(cus) if c.id == pm)
    with unit_of_work(engine) as session:
        return create_subscription(
            session,
            now=RENEWS_AT - timedelta(days=30),
            settings=settings,
            email="jane@example.com",
            name="Jane",
            card=SavedCard(cus, pm, card.brand, card.last4, card.exp_month, card.exp_year),
            amount=1999,
            currency="EUR",
            interval="month",
            interval_count=1,
            renews_at=RENEWS_AT,
        ).id


def test_card_expiring_warning_comes_in_the_notice_window_once(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    mailbox: Mailbox,
) -> None:
    _subscribe(engine, smtp_settings, faststar, exp_year=2026)  # valid through Dec 2026
    clock = Clock(RENEWS_AT - timedelta(days=8))
    run_sweep(engine, faststar, smtp_settings, clock)
    assert mailbox.messages == []  # outside the 7-day window
    clock.now = RENEWS_AT - timedelta(days=7)
    run_sweep(engine, faststar, smtp_settings, clock)
    clock.advance(days=1)
    run_sweep(engine, faststar, smtp_settings, clock)
    [warning] = mailbox.messages  # the upcoming notice is off by default
    assert warning["Subject"] == (
        "Your card expires before your next 19.99 EUR payment to Example Merchant"
    )
    assert "ending in 4242 expires 12/2026" in plain_text(warning)
    assert "05 January 2027" in plain_text(warning)


def test_upcoming_renewal_notice_when_switched_on(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    mailbox: Mailbox,
) -> None:
    _subscribe(engine, smtp_settings, faststar, exp_year=2030)
    noticing = smtp_settings.model_copy(update={"upcoming_renewal_notice": True})
    clock = Clock(RENEWS_AT - timedelta(days=6))
    run_sweep(engine, faststar, noticing, clock)
    run_sweep(engine, faststar, noticing, clock)
    [notice] = mailbox.messages  # the card is fine: no warning
    assert notice["Subject"] == "Your Example Merchant subscription renews soon: 19.99 EUR"
    assert "renews on 05 January 2027, 09:00 UTC" in plain_text(notice)


def test_no_notices_for_a_subscription_that_ends_with_its_period(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    mailbox: Mailbox,
) -> None:
    sub_id = _subscribe(engine, smtp_settings, faststar, exp_year=2026)  # would be warned
    with unit_of_work(engine) as session:
        session.get_one(Subscription, sub_id).cancel_at_period_end = True
    noticing = smtp_settings.model_copy(update={"upcoming_renewal_notice": True})
    run_sweep(engine, faststar, noticing, Clock(RENEWS_AT - timedelta(days=3)))
    assert mailbox.messages == []


def _plan(connection: Connection, query: Executable) -> str:
    """The database's plan for ``query``, with its parameters bound as usual."""
    explain = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "

    def prefix(*args: Any) -> tuple[str, Any]:
        return explain + args[2], args[3]

    event.listen(connection, "before_cursor_execute", prefix, retval=True)
    try:
        return "\n".join(str(tuple(row)) for row in connection.execute(query))
    finally:
        event.remove(connection, "before_cursor_execute", prefix)


def test_the_notice_query_reads_only_subscriptions_still_owed_their_notices(
    engine: Engine,
) -> None:
    # Without the plain (status, next_renewal_at) index the database must either use the
    # partial index, whose rows are the subscriptions still owed their notices, or scan.
    query = pre_renewal_notice_query(RENEWS_AT, 7)
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(text("DROP INDEX ix_subscriptions_due"))
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = _plan(connection, query)
        transaction.rollback()
    assert "ix_subscriptions_notice_due" in plan, plan
