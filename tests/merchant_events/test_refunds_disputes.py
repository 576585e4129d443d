"""Refunds and disputes FastStar reports, end to end through the sandbox's controls: its
events (fed to the inbox without HTTP) are recorded on the renewal once per change, open a
review, and become merchant events; a report naming a payment no renewal carries waits,
then becomes a review, never a guess. SQLite and PostgreSQL; both event shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.sandbox.testing import RunningSandbox
from renewals.services.views import with_settlements
from tests.merchant_events.conftest import event_rows, types_of
from tests.support import scenarios as sc
from tests.support.factories import CARDS, Clock, save_sandbox_card
from tests.support.inline import run_sweep

Make = Callable[..., int]


def _event(
    sandbox: RunningSandbox, event_type: str, payment_id: str, nth: int = -1
) -> dict[str, Any]:
    matching = [
        e
        for e in sandbox.events()
        if e["type"] == event_type and e["data"].get("payment_id") == payment_id
    ]
    return matching[nth]


def _paid_renewal(
    engine: Engine, make: Make, faststar: FastStarClient, settings: Settings, clock: Clock
) -> tuple[int, int, str]:
    sub_id = make("success", renews_at=clock())
    run_sweep(engine, faststar, settings, clock)
    renewal = sc.only_renewal(engine, sub_id)
    assert renewal.payment_intent_id is not None
    return sub_id, renewal.id, renewal.payment_intent_id


@pytest.mark.parametrize("shape", ["sandbox", "documented"])
def test_a_refund_is_recorded_reviewed_and_told_once_per_change(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    shape: str,
) -> None:
    sandbox.configure(webhook_documented_shape=shape == "documented")
    sub_id, renewal_id, pi = _paid_renewal(events_on, make_subscription, faststar, settings, clock)

    sandbox.refund(pi, amount=500)
    partial = _event(sandbox, "payment.refunded", pi)
    assert partial["data"]["status"] == "partially_refunded"
    sc.deliver_event(events_on, settings, clock, partial)
    renewal = sc.renewal(events_on, renewal_id)
    # The documented shape does not say how much: recorded as a refund of unknown amount.
    assert renewal.refunded_amount == (500 if shape == "sandbox" else None)
    assert renewal.refunded_at == clock()
    # The refund.succeeded FastStar also sends is recorded and ignored.
    refund_succeeded = _event(sandbox, "refund.succeeded", pi)
    inbox_id = sc.deliver_event(events_on, settings, clock, refund_succeeded)
    assert sc.inbox_event(events_on, inbox_id).status == "ignored"

    clock.advance(minutes=5)
    sandbox.refund(pi)  # the rest
    sc.deliver_event(events_on, settings, clock, _event(sandbox, "payment.refunded", pi))
    assert sc.renewal(events_on, renewal_id).refunded_amount == 1999

    # The same report again (a new event id, the same facts): nothing changes or is told.
    again = {**_event(sandbox, "payment.refunded", pi), "id": f"evt_{uuid.uuid4().hex}"}
    inbox_id = sc.deliver_event(events_on, settings, clock, again)
    assert sc.inbox_event(events_on, inbox_id).outcome.startswith("already recorded")

    assert types_of(events_on, sub_id) == [
        "subscription.renewed",
        "renewal.refunded",
        "renewal.refunded",
    ]
    refunds = [json.loads(r.body)["data"]["refund"] for r in event_rows(events_on, sub_id)[1:]]
    assert [r["status"] for r in refunds] == ["partially_refunded", "refunded"]
    assert refunds[1]["amount_refunded"] == 1999 and refunds[1]["payment_id"] == pi
    [review] = sc.open_reviews(events_on)
    assert (review["kind"], review["renewal_id"], review["payment_intent_id"]) == (
        "refunded",
        renewal_id,
        pi,
    )
    [shown] = with_settlements([], [review])[1]
    assert f"refunded on renewal {renewal_id}" in shown["settle"]
    # The subscription's status is the merchant's call, not ours.
    assert sc.subscription(events_on, sub_id).status == "active"


def test_a_dispute_is_recorded_through_its_stages_and_never_reopened(
    events_on: Engine,
    make_subscription: Make,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
) -> None:
    sub_id, renewal_id, pi = _paid_renewal(events_on, make_subscription, faststar, settings, clock)
    opened = sandbox.dispute(pi)
    sandbox.dispute(pi, status="under_review")
    sandbox.dispute(pi, status="lost")
    created = _event(sandbox, "dispute.created", pi)
    updated = _event(sandbox, "dispute.updated", pi)
    closed = _event(sandbox, "dispute.closed", pi)

    sc.deliver_event(events_on, settings, clock, created)
    renewal = sc.renewal(events_on, renewal_id)
    assert (renewal.dispute_id, renewal.dispute_status) == (opened["id"], "needs_response")
    sc.deliver_event(events_on, settings, clock, closed)
    # Delivered late (FastStar does not promise order): it must not reopen the dispute.
    late = sc.deliver_event(events_on, settings, clock, updated)
    assert sc.inbox_event(events_on, late).outcome.startswith("already recorded")
    assert sc.renewal(events_on, renewal_id).dispute_status == "lost"

    assert types_of(events_on, sub_id) == [
        "subscription.renewed",
        "renewal.disputed",
        "renewal.disputed",
    ]
    statuses = [
        json.loads(r.body)["data"]["dispute"]["status"] for r in event_rows(events_on, sub_id)[1:]
    ]
    assert statuses == ["needs_response", "lost"]
    assert [r["kind"] for r in sc.open_reviews(events_on)] == ["disputed"]


def test_a_refund_of_a_payment_no_renewal_carries_waits_then_becomes_a_review(
    events_on: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
) -> None:
    card = save_sandbox_card(settings, CARDS["success"])
    outcome = faststar.charge_off_session(
        card.customer_id, card.payment_method_id, 700, "USD", idempotency_key="not-ours-1"
    )
    pi = outcome.payment_intent_id  # type: ignore[union-attr]
    sandbox.refund(pi)
    inbox_id = sc.deliver_event(events_on, settings, clock, _event(sandbox, "payment.refunded", pi))
    assert sc.inbox_event(events_on, inbox_id).status == "pending"  # a worker may record it
    assert sc.open_reviews(events_on) == []

    clock.advance(minutes=16)
    run_sweep(events_on, faststar, settings, clock)
    assert sc.inbox_event(events_on, inbox_id).status == "processed"
    [review] = sc.open_reviews(events_on)
    assert (review["kind"], review["renewal_id"], review["payment_intent_id"]) == (
        "refunded",
        None,
        pi,
    )
    assert event_rows(events_on) == []  # nothing of ours to tell the merchant about
