"""Every subscription status change writes exactly one merchant event, in the transaction
of the change (rolled back with it), and nothing is written while the engine is not
enabled for them (no RENEWALS_MERCHANT_WEBHOOK_URL). SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.merchant_events import iso
from renewals.domain.states import SubscriptionEvent
from renewals.faststar import FastStarClient
from renewals.models import MerchantEvent, Renewal, Subscription
from renewals.models.db import unit_of_work
from tests.merchant_events.conftest import event_rows, types_of
from tests.support.factories import Clock
from tests.support.inline import run_sweep

Make = Callable[..., int]
Operator = Callable[..., dict[str, Any]]


def test_each_status_change_writes_one_event(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    operator: Operator,
) -> None:
    engine = events_on
    paid = make_subscription("success", renews_at=clock())
    sca = make_subscription("sca", renews_at=clock())
    declined = make_subscription("declined", renews_at=clock())
    run_sweep(engine, faststar, settings, clock)
    assert types_of(engine, paid) == ["subscription.renewed"]
    assert types_of(engine, sca) == ["subscription.action_required"]
    assert types_of(engine, declined) == ["subscription.past_due"]

    clock.advance(days=3, minutes=1)  # the first dunning retry declines again: no change
    run_sweep(engine, faststar, settings, clock)
    assert types_of(engine, declined) == ["subscription.past_due"]

    operator("pause", subscription_id=paid, reason="support")
    operator("resume", subscription_id=paid)
    operator("cancel", subscription_id=paid, reason="asked to")
    assert types_of(engine, paid) == [
        "subscription.renewed",
        "subscription.paused",
        "subscription.resumed",
        "subscription.canceled",
    ]

    [renewed, *_] = event_rows(engine, paid)
    body = json.loads(renewed.body)
    assert body["id"] == renewed.event_id and body["type"] == "subscription.renewed"
    subscription = body["data"]["subscription"]
    assert (subscription["id"], subscription["status"], subscription["previous_status"]) == (
        paid,
        "active",
        "active",
    )
    assert (subscription["amount"], subscription["currency"]) == (1999, "USD")
    with unit_of_work(engine) as session:
        renewal = session.get_one(Renewal, renewed.renewal_id)
        assert body["data"]["renewal"]["payment_id"] == renewal.payment_intent_id
        assert renewal.payment_intent_id is not None
        assert subscription["current_period_start"] == iso(renewal.period_start)
    assert "@" not in renewed.body  # no email address travels
    for row in event_rows(engine):
        assert (row.status, row.attempts) == ("pending", 0)


def test_the_event_rolls_back_with_its_change(
    events_on: Engine, make_subscription: Make, clock: Clock
) -> None:
    sub_id = make_subscription("success", renews_at=clock())

    class Abort(Exception):
        pass

    with pytest.raises(Abort), unit_of_work(events_on) as session:
        sub = session.get_one(Subscription, sub_id, with_for_update=True)
        transitions.move_subscription(
            session, sub, SubscriptionEvent.PAUSED_BY_OPERATOR, now=clock(), actor="test"
        )
        session.flush()
        assert len(event_rows_in(session)) == 1  # written, inside the transaction
        raise Abort
    assert event_rows(events_on) == []
    with unit_of_work(events_on) as session:
        assert session.get_one(Subscription, sub_id).status == "active"


def event_rows_in(session: Session) -> list[MerchantEvent]:
    return list(session.scalars(select(MerchantEvent)))


def test_nothing_is_written_unless_enabled(
    engine: Engine, make_subscription: Make, clock: Clock
) -> None:
    sub_id = make_subscription("success", renews_at=clock())
    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, sub_id, with_for_update=True)
        transitions.move_subscription(
            session, sub, SubscriptionEvent.PAUSED_BY_OPERATOR, now=clock(), actor="test"
        )
    assert event_rows(engine) == []


def test_a_batch_that_ends_periods_writes_one_event_each(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
) -> None:
    subs = [make_subscription("success", renews_at=clock()) for _ in range(2)]
    run_sweep(events_on, faststar, settings, clock)  # both renewed
    with unit_of_work(events_on) as session:
        for sub_id in subs:
            session.get_one(Subscription, sub_id).cancel_at_period_end = True
    clock.advance(days=32)
    run_sweep(events_on, faststar, settings, clock)  # the set-based move to canceled
    for sub_id in subs:
        assert types_of(events_on, sub_id) == ["subscription.renewed", "subscription.canceled"]
        canceled = json.loads(event_rows(events_on, sub_id)[1].body)["data"]
        assert canceled["subscription"]["previous_status"] == "active"
        assert canceled["renewal"] is None
