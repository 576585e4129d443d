"""The typed API against the real sandbox and both databases: create (idempotent), a change
of amount from the next period, a change of card, pause and cancel; and the card details
fetched after an import."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from renewals.api import RenewalsAPI, RenewalsAPIError
from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import AuditEvent, PaymentMethod, Renewal
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.cards import fetch_all
from renewals.services.followups import FollowUps
from tests.support.factories import Clock, save_sandbox_card
from tests.support.inline import run_follow_ups, run_sweep
from tests.support.scenarios import attach_card, sweep_only


def api_for(
    engine: Engine, settings: Settings, faststar: FastStarClient, clock: Clock
) -> RenewalsAPI:
    handed: list[FollowUps] = []
    return RenewalsAPI(engine, settings, faststar=faststar, clock=clock, hand_out=handed.append)


def renewals_of(engine: Engine, subscription_id: int) -> list[tuple[int, int, str]]:
    with unit_of_work(engine) as session:
        return [
            (r.period_index, r.amount, r.status.value)
            for r in session.scalars(
                select(Renewal)
                .where(Renewal.subscription_id == subscription_id)
                .order_by(Renewal.period_index)
            )
        ]


def test_a_claimed_renewal_keeps_its_amount_and_the_next_period_charges_the_new_one(
    engine: Engine, settings: Settings, faststar: FastStarClient, sandbox: RunningSandbox
) -> None:
    clock = Clock()
    card = save_sandbox_card(settings, "4242424242424242")
    api = api_for(engine, settings, faststar, clock)
    terms = {
        "external_id": "acct-1",
        "email": "ada@example.com",
        "customer_id": card.customer_id,
        "payment_method_id": card.payment_method_id,
        "amount": 1999,
        "currency": "USD",
        "interval": "month",
        "next_renewal_at": clock().isoformat(),
    }
    sub = api.create_subscription(**terms)  # type: ignore[arg-type]
    assert sub.created and sub.amount == 1999
    again = api.create_subscription(**terms)  # type: ignore[arg-type]
    assert (again.id, again.created) == (sub.id, False)
    with pytest.raises(RenewalsAPIError) as conflict:
        api.create_subscription(**{**terms, "amount": 2999})  # type: ignore[arg-type]
    assert (conflict.value.code, conflict.value.field) == ("conflict", "amount")

    # Period 0 is due: the sweep materialises it at 19.99 and claims its charge...
    claimed = sweep_only(engine, settings, clock)
    assert renewals_of(engine, sub.id) == [(0, 1999, "pending")]
    # ... then the merchant raises the price: period 0 has started, so it keeps its amount.
    changed = api.change_amount("acct-1", amount=2499)
    assert (changed.pending_amount, changed.pending_from_index) == (2499, 1)
    run_follow_ups(engine, faststar, settings, clock, claimed)
    assert renewals_of(engine, sub.id) == [(0, 1999, "succeeded")]

    clock.advance(days=31)  # period 1 starts: the new price applies, and becomes the price
    run_sweep(engine, faststar, settings, clock)
    assert renewals_of(engine, sub.id) == [(0, 1999, "succeeded"), (1, 2499, "succeeded")]
    assert [c["amount"] for c in sandbox.charges()] == [1999, 2499]
    now = api.get("acct-1")
    assert (now.amount, now.pending_amount, now.pending_from_index) == (2499, None, None)

    with pytest.raises(RenewalsAPIError) as refused:
        api.change_amount("acct-1", amount=0)
    assert (refused.value.code, refused.value.field) == ("invalid", "amount")
    with pytest.raises(RenewalsAPIError) as missing:
        api.change_amount("nobody", amount=100)
    assert missing.value.code == "not_found"


def test_change_card_pause_and_cancel(
    engine: Engine, settings: Settings, faststar: FastStarClient, sandbox: RunningSandbox
) -> None:
    clock = Clock()
    card = save_sandbox_card(settings, "4242424242424242")
    api = api_for(engine, settings, faststar, clock)
    sub = api.create_subscription(
        external_id="acct-2",
        email="bo@example.com",
        customer_id=card.customer_id,
        payment_method_id=card.payment_method_id,
        amount=500,
        currency="USD",
        interval="month",
        next_renewal_at=(clock() + timedelta(days=3)).isoformat(),
    )
    second = attach_card(settings, sandbox, card.customer_id, "5555555555554444")
    api.change_card("acct-2", payment_method_id=second.payment_method_id)
    with pytest.raises(RenewalsAPIError) as foreign:
        other = save_sandbox_card(settings, "4242424242424242")
        api.create_subscription(
            external_id="acct-3",
            email="cy@example.com",
            customer_id=other.customer_id,
            payment_method_id=other.payment_method_id,
            amount=500,
            currency="USD",
            interval="month",
            next_renewal_at=clock().isoformat(),
        )
        api.change_card("acct-3", payment_method_id=card.payment_method_id)
    assert (foreign.value.code, foreign.value.field) == ("invalid", "payment_method_id")

    paused = api.pause(sub.id, reason="customer asked")
    assert "paused" in paused.text and api.get("acct-2").state == "paused"
    with pytest.raises(RenewalsAPIError) as twice:
        api.pause("acct-2")
    assert twice.value.code == "refused" and "paused already" in twice.value.message
    api.resume("acct-2")
    api.cancel("acct-2", at_period_end=True)
    assert api.get("acct-2").cancel_at_period_end

    # The details of every card the API was given by id alone (acct-2's two, acct-3's one)
    # are fetched in one batch.
    assert fetch_all(engine, faststar, clock) == 3
    with unit_of_work(engine) as session:
        details = {
            pm.faststar_id: (pm.brand, pm.last4)
            for pm in session.scalars(select(PaymentMethod))
            if pm.faststar_id in (card.payment_method_id, second.payment_method_id)
        }
    assert details == {
        card.payment_method_id: ("visa", "4242"),
        second.payment_method_id: ("mastercard", "4444"),
    }


def test_card_details_after_an_import_in_batches(
    engine: Engine, settings: Settings, faststar: FastStarClient
) -> None:
    import io

    from renewals.domain.import_rows import FileFormat
    from renewals.services.imports import import_subscriptions

    clock = Clock()
    cards = [save_sandbox_card(settings, "4242424242424242") for _ in range(3)]
    lines = [
        "external_id,email,customer_id,payment_method_id,amount,currency,interval,next_renewal_at"
    ]
    lines += [
        f"c-{i},u{i}@example.com,{c.customer_id},{c.payment_method_id},100,USD,week,{clock().isoformat()}"
        for i, c in enumerate(cards)
    ]
    # A card FastStar does not list for its customer: marked fetched, without details.
    lines.append(
        f"c-x,u0@example.com,{cards[0].customer_id},pm_unknown,100,USD,week,{clock().isoformat()}"
    )
    report = import_subscriptions(
        engine, settings, io.StringIO("\n".join(lines)), FileFormat.CSV, now=clock(), actor="t"
    )
    assert report.created == 4 and report.cards_to_fetch == 4
    # Charging does not wait for the details: the first renewal is charged by pm_ id alone.
    run_sweep(engine, faststar, settings, clock)
    assert fetch_all(engine, faststar, clock, batch=2) == 3  # two batches of customers
    with unit_of_work(engine) as session:
        rows = {
            pm.faststar_id: (pm.last4, pm.details_fetched_at is not None)
            for pm in session.scalars(select(PaymentMethod))
        }
    assert rows["pm_unknown"] == (None, True)
    assert all(rows[c.payment_method_id] == ("4242", True) for c in cards)
    with unit_of_work(engine) as session:
        statuses = session.scalars(select(Renewal.status)).all()
    assert sorted(s.value for s in statuses).count("succeeded") == 3


def test_change_plan_moves_to_a_catalog_price_from_the_next_period(
    engine: Engine, settings: Settings, faststar: FastStarClient, sandbox: RunningSandbox
) -> None:
    clock = Clock()
    card = save_sandbox_card(settings, "4242424242424242")
    api = api_for(engine, settings, faststar, clock)
    sub = api.create_subscription(
        external_id="plan-1",
        email="di@example.com",
        customer_id=card.customer_id,
        payment_method_id=card.payment_method_id,
        amount=1000,
        currency="USD",
        interval="month",
        next_renewal_at=clock().isoformat(),
        price_id="price_basic",
    )
    claimed = sweep_only(engine, settings, clock)  # period 0 has started at the basic price
    moved = api.change_plan("plan-1", price_id="price_pro", amount=3000)
    assert (moved.price_id, moved.amount) == ("price_basic", 1000)
    assert (moved.pending_price_id, moved.pending_amount, moved.pending_from_index) == (
        "price_pro",
        3000,
        1,
    )
    for bad, field in (
        ({"price_id": "plan_pro", "amount": 3000}, "price_id"),
        ({"price_id": "price_pro", "amount": 0}, "amount"),
        ({"price_id": None, "amount": 3000}, "price_id"),
    ):
        with pytest.raises(RenewalsAPIError) as refused:
            api.change_plan("plan-1", **bad)  # type: ignore[arg-type]
        assert (refused.value.code, refused.value.field) == ("invalid", field)
    with unit_of_work(engine) as session:
        scheduled = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "price_change_scheduled")
        ).all()
    assert [e.details for e in scheduled] == [
        {"amount": [1000, 3000], "price_id": ["price_basic", "price_pro"], "from_period_index": 1}
    ]

    run_follow_ups(engine, faststar, settings, clock, claimed)
    clock.advance(days=31)  # period 1: the new plan is charged, and becomes the plan
    run_sweep(engine, faststar, settings, clock)
    assert renewals_of(engine, sub.id) == [(0, 1000, "succeeded"), (1, 3000, "succeeded")]
    assert [c["amount"] for c in sandbox.charges()] == [1000, 3000]
    now = api.get("plan-1")
    assert (now.price_id, now.amount, now.pending_price_id, now.pending_amount) == (
        "price_pro",
        3000,
        None,
        None,
    )

    api.cancel("plan-1")
    with pytest.raises(RenewalsAPIError) as canceled:
        api.change_plan("plan-1", price_id="price_max", amount=9000)
    assert canceled.value.code == "refused" and "canceled" in canceled.value.message
