"""Delivery to a real HTTP receiver on a loopback port, verified with the documented
snippet: retries on the backoff after a 500, failure after the last retry (and the report
counting it), one event at a time per subscription in order, and a worker lost mid-send
(the event comes again, same id, same body). SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import SubscriptionEvent
from renewals.faststar import FastStarClient
from renewals.models import MerchantEvent, Subscription
from renewals.models.db import unit_of_work
from renewals.services.merchant_webhooks import Answer, deliver_merchant_event, http_post
from renewals.services.report import build_report
from tests.merchant_events.conftest import SECRET, event_rows
from tests.support.factories import Clock
from tests.support.inline import run_sweep
from tests.support.merchant_receiver import Receiver

Make = Callable[..., int]


def _move(engine: Engine, sub_id: int, event: SubscriptionEvent, clock: Clock) -> None:
    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, sub_id, with_for_update=True)
        transitions.move_subscription(session, sub, event, now=clock(), actor="operator:test")


def _row(engine: Engine, row_id: int) -> MerchantEvent:
    with unit_of_work(engine) as session:
        return session.get_one(MerchantEvent, row_id)


def test_a_500_is_retried_on_the_backoff_then_delivered(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    hook_settings: Settings,
    clock: Clock,
    receiver: Receiver,
) -> None:
    sub_id = make_subscription("success", renews_at=clock() + timedelta(days=30))
    _move(events_on, sub_id, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    [row] = event_rows(events_on)
    receiver.answers = [500]

    run_sweep(events_on, faststar, hook_settings, clock)
    row = _row(events_on, row.id)
    assert (row.status, row.attempts, row.last_http_status) == ("pending", 1, 500)
    assert row.next_attempt_at == clock() + timedelta(minutes=1)
    assert row.last_error == "HTTP 500"

    run_sweep(events_on, faststar, hook_settings, clock)  # not due yet: nothing is sent
    assert len(receiver.received()) == 1

    clock.advance(minutes=1)
    run_sweep(events_on, faststar, hook_settings, clock)
    row = _row(events_on, row.id)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 2, clock())

    first, second = receiver.received()
    assert first.verified and second.verified
    assert first.event_id == second.event_id == row.event_id
    assert first.body == second.body == row.body.encode()
    assert first.event["type"] == "subscription.paused"


def test_after_the_last_retry_the_event_fails_and_the_next_one_goes(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    hook_settings: Settings,
    clock: Clock,
    receiver: Receiver,
) -> None:
    settings = hook_settings.model_copy(update={"merchant_webhook_retry_delays": "1m,2m"})
    sub_id = make_subscription("success", renews_at=clock() + timedelta(days=30))
    _move(events_on, sub_id, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    _move(events_on, sub_id, SubscriptionEvent.RESUMED_BY_OPERATOR, clock)
    paused, resumed = event_rows(events_on)
    receiver.answers = [503, 503, 503]

    for wait in (0, 1, 2):  # the first send, then one after each delay
        clock.advance(minutes=wait)
        run_sweep(events_on, faststar, settings, clock)
    assert (_row(events_on, paused.id).status, _row(events_on, paused.id).attempts) == (
        "failed",
        3,
    )
    # The failure unblocked the subscription's next event, handed on at once.
    assert _row(events_on, resumed.id).status == "sent"
    assert [d.event["type"] for d in receiver.received()] == [
        "subscription.paused",
        "subscription.paused",
        "subscription.paused",
        "subscription.resumed",
    ]
    with unit_of_work(events_on) as session:
        report = build_report(session, now=clock(), since=clock() - timedelta(days=1))
    assert report["merchant_events"]["failed"] == 1
    assert report["merchant_events"]["waiting"] == 0


def test_a_subscription_s_events_go_one_at_a_time_in_order(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    hook_settings: Settings,
    clock: Clock,
    receiver: Receiver,
) -> None:
    first_sub = make_subscription("success", renews_at=clock() + timedelta(days=30))
    other_sub = make_subscription("success", renews_at=clock() + timedelta(days=30))
    _move(events_on, first_sub, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    _move(events_on, first_sub, SubscriptionEvent.RESUMED_BY_OPERATOR, clock)
    _move(events_on, other_sub, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    paused, resumed, other = event_rows(events_on)
    receiver.answers = [500]  # the first subscription's first event fails once

    run_sweep(events_on, faststar, hook_settings, clock)
    # The other subscription is not held back; the first one's second event is.
    assert _row(events_on, other.id).status == "sent"
    assert _row(events_on, resumed.id).status == "pending"
    assert _row(events_on, resumed.id).attempts == 0
    # A stray message for the held-back event sends nothing either.
    deliver_merchant_event(events_on, resumed.id, clock=clock, settings=hook_settings)
    assert _row(events_on, resumed.id).attempts == 0

    clock.advance(minutes=1)
    run_sweep(events_on, faststar, hook_settings, clock)
    assert [_row(events_on, r.id).status for r in (paused, resumed)] == ["sent", "sent"]
    order = [d.event_id for d in receiver.received() if d.event_id != other.event_id]
    assert order == [paused.event_id, paused.event_id, resumed.event_id]


def test_a_worker_lost_mid_send_means_the_event_comes_again(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    hook_settings: Settings,
    clock: Clock,
    receiver: Receiver,
) -> None:
    sub_id = make_subscription("success", renews_at=clock() + timedelta(days=30))
    _move(events_on, sub_id, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    [row] = event_rows(events_on)

    class WorkerDied(BaseException):
        pass

    def post_then_die(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
        http_post(url, body, headers, timeout)  # the receiver has it (and answered 200)
        raise WorkerDied

    with pytest.raises(WorkerDied):
        deliver_merchant_event(
            events_on, row.id, clock=clock, settings=hook_settings, post=post_then_die
        )
    assert _row(events_on, row.id).status == "sending"

    run_sweep(events_on, faststar, hook_settings, clock)  # the lease is still live
    assert len(receiver.received()) == 1
    clock.advance(seconds=hook_settings.lease_seconds)
    run_sweep(events_on, faststar, hook_settings, clock)
    assert (_row(events_on, row.id).status, _row(events_on, row.id).attempts) == ("sent", 2)

    first, again = receiver.received()
    assert first.verified and again.verified
    assert (first.event_id, first.body) == (again.event_id, again.body)
    assert len(receiver.events()) == 1  # once, for a receiver that dedupes on the id


def test_the_secret_never_reaches_a_stored_error(
    events_on: Engine,
    make_subscription: Make,
    hook_settings: Settings,
    clock: Clock,
    unused_port: int,
) -> None:
    secret_in_url = f"http://127.0.0.1:{unused_port}/hooks?token={SECRET}"
    settings = hook_settings.model_copy(update={"merchant_webhook_url": secret_in_url})
    sub_id = make_subscription("success", renews_at=clock() + timedelta(days=30))
    _move(events_on, sub_id, SubscriptionEvent.PAUSED_BY_OPERATOR, clock)
    [row] = event_rows(events_on)
    deliver_merchant_event(events_on, row.id, clock=clock, settings=settings)
    row = _row(events_on, row.id)
    assert row.status == "pending" and row.last_error is not None
    assert row.last_error.startswith("ConnectError")
    assert SECRET not in row.last_error
    assert json.loads(row.body)["id"] == row.event_id
