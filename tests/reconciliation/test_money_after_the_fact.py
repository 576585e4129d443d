"""Regression tests for issue 8, "Money after the fact": payments that reach us after the
charge call (webhooks, on-session checkouts, operators) must be booked on the right renewal,
never give false reviews, and never leave the engine crashing or a paying customer canceled.

Every call into the engine goes through ``tests.support.scenarios``. Webhook events are the
sandbox's own (``sandbox.events()``), fed to the inbox without HTTP; where it matters they are
also cut down to FastStar's documented ``data`` (``shape="documented"``: no customer id, no
checkout session id). SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.sandbox.testing import RunningSandbox
from tests.support import scenarios as sc
from tests.support.factories import CARDS, Clock
from tests.support.inline import run_sweep

SHAPES = ["sandbox", "documented"]


def _payment_event(sandbox: RunningSandbox, payment_intent_id: str, shape: str) -> dict[str, Any]:
    """The ``payment.succeeded`` event the sandbox emitted for a payment, in ``shape``."""
    [event] = [
        e
        for e in sandbox.events()
        if e["type"] == "payment.succeeded" and e["data"]["payment_id"] == payment_intent_id
    ]
    return sc.documented(event) if shape == "documented" else event


def _reviews_of(engine: Engine, payment_intent_id: str) -> list[str]:
    """The kinds of the open reviews of one payment."""
    return [
        r["kind"] for r in sc.open_reviews(engine) if r["payment_intent_id"] == payment_intent_id
    ]


def _charges_for(sandbox: RunningSandbox, customer_id: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.charges() if c["customer_id"] == customer_id]


@pytest.fixture
def unreachable(sandbox: RunningSandbox, unused_port: int) -> Iterator[FastStarClient]:
    """A client for a FastStar that refuses every connection."""
    with FastStarClient(f"http://127.0.0.1:{unused_port}/api/v1", sandbox.api_key) as client:
        yield client


# ----------------------------------------------------------------- 1, 2: the wrong renewal


def _two_unknowns_of_one_customer(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> tuple[int, int, str, str]:
    """One customer, two subscriptions at the same price due at once: A's charge fails
    before charging (500), B's charges but its response is lost. Both end ``unknown``.
    Returns (renewal A, renewal B, customer, B's payment id)."""
    sub_a = make_subscription("error_500", renews_at=clock.now)
    customer = sc.customer_of(engine, sub_a)
    card_b = sc.attach_card(settings, sandbox, customer, CARDS["lost_response"])
    sub_b = sc.subscribe(engine, settings, card_b, renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    a, b = sc.only_renewal(engine, sub_a), sc.only_renewal(engine, sub_b)
    assert (a.status, b.status) == ("unknown", "unknown")
    [charge] = _charges_for(sandbox, customer)
    assert charge["payment_method_id"] == card_b.payment_method_id
    return a.id, b.id, customer, str(charge["payment_intent_id"])


@pytest.mark.parametrize("shape", SHAPES)
def test_a_payment_that_fits_two_unknown_renewals_is_never_booked_on_the_wrong_one(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    shape: str,
) -> None:
    a, b, customer, pi_b = _two_unknowns_of_one_customer(
        engine, faststar, settings, clock, sandbox, make_subscription
    )
    sc.deliver_event(engine, settings, clock, _payment_event(sandbox, pi_b, shape))
    # It fits both unknown attempts (same customer, amount, currency): an operator decides.
    [open_review] = sc.open_reviews(engine)
    assert (open_review["kind"], open_review["payment_intent_id"]) == ("unmatched", pi_b)
    assert sc.renewal(engine, a).payment_intent_id is None
    assert sc.renewal(engine, b).payment_intent_id is None

    # The janitor's rounds: 5 min, 1 h, then daily after the outcome became unknown.
    for step in (timedelta(minutes=6), timedelta(hours=2), timedelta(hours=25)):
        clock.advance(seconds=step.total_seconds())
        run_sweep(engine, faststar, settings, clock)
        renewal_a, renewal_b = sc.renewal(engine, a), sc.renewal(engine, b)
        assert renewal_a.payment_intent_id is None, "A was booked with B's payment"
        assert renewal_b.payment_intent_id is None, "B was booked by a guess"
        assert (renewal_a.status, renewal_b.status) == ("unknown", "unknown")
        assert _reviews_of(engine, pi_b) == ["unmatched"], "the review went away unbooked"

    # The operator books B with its payment: the review of that payment is closed with it.
    sc.operator_paid(engine, settings, clock, b, pi_b)
    renewal_b = sc.renewal(engine, b)
    assert (renewal_b.status, renewal_b.payment_intent_id) == ("succeeded", pi_b)
    assert sc.renewal(engine, a).status == "unknown"
    assert _reviews_of(engine, pi_b) == [], "the booked payment is still listed for review"
    assert len(_charges_for(sandbox, customer)) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_the_janitor_does_not_crash_on_a_payment_an_operator_already_booked(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    shape: str,
) -> None:
    a, b, _, pi_b = _two_unknowns_of_one_customer(
        engine, faststar, settings, clock, sandbox, make_subscription
    )
    sc.deliver_event(engine, settings, clock, _payment_event(sandbox, pi_b, shape))
    # The operator books B before the janitor first looks at the two unknowns.
    sc.operator_paid(engine, settings, clock, b, pi_b)
    assert sc.renewal(engine, b).status == "succeeded"

    for step in (timedelta(minutes=6), timedelta(hours=1), timedelta(hours=25)):
        clock.advance(seconds=step.total_seconds())
        run_sweep(engine, faststar, settings, clock)  # raises nothing
        run_sweep(engine, faststar, settings, clock)

    renewal_a = sc.renewal(engine, a)
    assert (renewal_a.status, renewal_a.payment_intent_id) == ("unknown", None)
    escalations = [
        r for r in sc.audit_rows(engine, renewal_id=a) if r.action == "unknown_escalated"
    ]
    assert len(escalations) == 1
    assert _reviews_of(engine, pi_b) == []  # B's payment was booked: nothing left to review
