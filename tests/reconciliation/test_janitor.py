"""The janitor for unknown outcomes when keys are not trusted: it looks again on the backoff,
tells operators once, and settles the attempt from a payment FastStar reported earlier.

No test here depends on a webhook the sandbox emits (nothing is charged: the calls go to a
black hole), so none takes ``event_shape``. The payment "reported earlier" is planted as the
review its event became: one naming the customer (what the sandbox's shape allows) and one
naming none (what an event in FastStar's documented shape becomes after its wait)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import ReviewKind
from renewals.faststar import FastStarClient
from renewals.models import PaymentReview
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.operators import payments_to_review
from renewals.services.reconcile import reconcile_paid
from tests.support.celery_processes import black_hole
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_sweep, view


def _unknown(
    engine: Engine, settings: Settings, clock: Clock, sandbox: RunningSandbox, sub_id: int
) -> None:
    with black_hole() as port:
        url = f"http://127.0.0.1:{port}/api/v1"
        with FastStarClient(url, sandbox.api_key, timeout=httpx.Timeout(0.5)) as dead:
            run_sweep(engine, dead, settings, clock)
    assert view(engine, sub_id)["renewals"][0]["status"] == "unknown"


def test_unknown_is_rechecked_on_the_backoff_and_escalated_once(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    _unknown(engine, settings, clock, sandbox, sub_id)
    for step in (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=24)):
        clock.advance(seconds=step.total_seconds())
        run_sweep(engine, faststar, settings, clock)
        run_sweep(engine, faststar, settings, clock)  # not due again at once
    actions = audit_actions(engine, sub_id)
    assert actions.count("unknown_rechecked") == 3
    assert actions.count("unknown_escalated") == 1
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "unknown"
    assert [a["sends"] for a in renewal["attempts"]] == [1]  # never re-sent untrusted
    assert sandbox.charges() == []


def test_a_payment_reported_earlier_settles_the_unknown_attempt(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    _unknown(engine, settings, clock, sandbox, sub_id)
    customer = view(engine, sub_id)["customer_id"]
    # The review a sandbox-shaped event (naming the customer) left when nothing fit it yet.
    with unit_of_work(engine) as session:  # reported while it could not be matched yet
        transitions.open_review(
            session,
            kind=ReviewKind.UNMATCHED,
            now=clock(),
            source="webhook",
            reason="no renewal of ours matches this payment",
            payment_intent_id="pi_reported_earlier",
            amount=1999,
            currency="USD",
            customer_id=customer,
            details={"created": clock().isoformat()},
        )
    clock.advance(minutes=5)
    run_sweep(engine, faststar, settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert (renewal["status"], renewal["payment_intent_id"]) == (
        "succeeded",
        "pi_reported_earlier",
    )
    with unit_of_work(engine) as session:
        [row] = session.scalars(select(PaymentReview)).all()
    assert row.resolved_at is not None
    assert view(engine, sub_id)["status"] == "active"


def test_a_payment_reported_without_a_customer_is_left_to_an_operator(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    _unknown(engine, settings, clock, sandbox, sub_id)
    renewal_id = view(engine, sub_id)["renewals"][0]["id"]
    with unit_of_work(engine) as session:  # what a documented-shape event became
        transitions.open_review(
            session,
            kind=ReviewKind.UNMATCHED,
            now=clock(),
            source="webhook",
            reason="no_customer: no customer on the report: cannot match by amount",
            payment_intent_id="pi_reported_without_customer",
            amount=1999,
            currency="USD",
            customer_id=None,
            details={"created": clock().isoformat()},
        )
    # Same amount and currency, but amount alone never identifies a renewal: the janitor
    # does not book it, the review stays open, and operators are told once.
    for step in (timedelta(minutes=5), timedelta(hours=1)):
        clock.advance(seconds=step.total_seconds())
        run_sweep(engine, faststar, settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert (renewal["status"], renewal["payment_intent_id"]) == ("unknown", None)
    assert audit_actions(engine, sub_id).count("unknown_escalated") == 1
    with unit_of_work(engine) as session:
        listed = [(r["kind"], r["payment_intent_id"]) for r in payments_to_review(session)]
    assert listed == [("unmatched", "pi_reported_without_customer")]

    # The operator, having checked FastStar, books it: the review closes itself.
    outcome, _ = reconcile_paid(
        engine,
        renewal_id,
        "pi_reported_without_customer",
        now=clock(),
        settings=settings,
        actor="operator:alice",
        reason="FastStar dashboard shows the payment",
    )
    assert outcome == "unknown resolved as paid"
    assert view(engine, sub_id)["status"] == "active"
    with unit_of_work(engine) as session:
        assert payments_to_review(session) == []
        [row] = session.scalars(select(PaymentReview)).all()
    assert row.resolved_at is not None
