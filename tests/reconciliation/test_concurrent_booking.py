"""Scenario 5 of "money after the fact", on PostgreSQL only (SQLite serialises every
transaction, so the race cannot happen there).

Under READ COMMITTED, "is this payment booked already?" and "which attempt could it be?"
are two statements. A webhook for our own charge, processed while the worker commits that
charge's result, used to see "not booked" and then "no open attempt" and file our own
payment as unmatched. The decision now locks the candidate attempts first: it waits for the
worker's commit and then finds the payment booked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from renewals.config import Settings
from renewals.faststar import FastStarClient, Paid, WebhookEvent
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.charge_outcomes import record_outcome
from renewals.services.inbox import process_inbox_event
from renewals.webhooks.inbox import store_event
from tests.support import scenarios as sc
from tests.support.factories import Clock
from tests.support.waiting import wait_for


def _blocked_on_a_lock(url: str) -> int:
    """How many sessions of this database wait for a row lock right now."""
    probe = create_engine(url)
    try:
        with probe.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            )
    finally:
        probe.dispose()


def test_a_webhook_processed_while_the_worker_commits_its_payment_is_not_a_review(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite serialises every transaction")
    clock = Clock(datetime.now(UTC).replace(microsecond=0))  # events carry real time
    sub_id = make_subscription("success", renews_at=clock.now)
    [renewal_id] = sc.sweep_only(engine, settings, clock).ids(sc.Work.CHARGE)
    order = sc.begin(engine, settings, clock, renewal_id)
    outcome = faststar.charge_off_session(
        order.customer_id,
        order.payment_method_id,
        order.amount,
        order.currency,
        idempotency_key=order.idempotency_key,
    )
    assert isinstance(outcome, Paid)
    [event] = [e for e in sandbox.events() if e["type"] == "payment.succeeded"]
    inbox_id = store_event(
        engine,
        WebhookEvent(
            id=event["id"],
            type=event["type"],
            created=event["created"],
            data=dict(event["data"]),
            livemode=False,
            api_version="v1",
        ),
        now=clock(),
    )
    assert inbox_id is not None

    webhook = threading.Thread(
        target=process_inbox_event,
        args=(engine, inbox_id),
        kwargs={"clock": clock, "settings": settings},
    )
    with unit_of_work(engine) as worker:
        record_outcome(worker, order, outcome, now=clock(), settings=settings)
        worker.flush()  # the worker's result is written, not yet committed
        webhook.start()
        # The webhook's decision waits for the worker's row locks instead of reading past
        # them (on the code this replaced, it never waited and filed a review).
        wait_for(
            lambda: _blocked_on_a_lock(settings.database_url),
            lambda n: n >= 1,
            what="the webhook to wait for the worker's commit",
        )
    webhook.join(30)
    assert not webhook.is_alive()

    assert sc.open_reviews(engine) == []
    assert sc.inbox_event(engine, inbox_id).status == "processed"
    assert sc.inbox_event(engine, inbox_id).outcome == "already booked"
    booked = sc.only_renewal(engine, sub_id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", outcome.payment_intent_id)
