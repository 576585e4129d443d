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
from renewals.faststar import FastStarClient, Paid
from renewals.sandbox.testing import RunningSandbox
from tests.support import scenarios as sc
from tests.support.factories import CARDS, Clock
from tests.support.inline import run_sweep

SHAPES = ["sandbox", "documented"]


def _deliver_and_settle(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    payment_intent_id: str,
    shape: str,
) -> None:
    """Deliver the payment's event; an event in the documented shape (no customer) first
    waits up to 15 minutes for a worker to record the payment id, then becomes a review."""
    sc.deliver_event(engine, settings, clock, _payment_event(sandbox, payment_intent_id, shape))
    if shape == "documented":
        assert sc.open_reviews(engine) == []  # still waiting
        clock.advance(minutes=16)
        run_sweep(engine, faststar, settings, clock)


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
    _deliver_and_settle(engine, faststar, settings, clock, sandbox, pi_b, shape)
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
    _deliver_and_settle(engine, faststar, settings, clock, sandbox, pi_b, shape)
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


# ----------------------------------------------------------------- 3, 4: paid on-session


def _requires_action(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> tuple[int, int, str]:
    """A 402: the renewal waits for the customer with a Checkout Session.
    Returns (subscription, renewal, checkout session id)."""
    sub_id = make_subscription("sca", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    waiting = sc.only_renewal(engine, sub_id)
    assert waiting.status == "requires_action"
    assert waiting.checkout_session_id is not None
    return sub_id, waiting.id, waiting.checkout_session_id


def test_a_customer_who_paid_on_session_before_the_reminder_is_not_canceled(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    start = clock.now
    sub_id, renewal_id, session_id = _requires_action(
        engine, faststar, settings, clock, make_subscription
    )
    # No webhook reaches us. The customer pays just before the first reminder is due.
    clock.now = start + timedelta(days=3, minutes=-2)
    sandbox.complete_checkout(session_id)
    [paid] = sandbox.charges()
    assert paid["checkout_session_id"] == session_id
    clock.now = start + timedelta(days=3, minutes=1)
    run_sweep(engine, faststar, settings, clock)
    clock.now = start + timedelta(days=7, minutes=1)
    run_sweep(engine, faststar, settings, clock)

    booked = sc.renewal(engine, renewal_id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", paid["payment_intent_id"])
    assert sc.subscription(engine, sub_id).status == "active"
    assert sc.open_reviews(engine) == []
    assert sc.ACTION_REMINDER_KIND not in sc.outbox_kinds(engine, renewal_id=renewal_id)


def test_a_customer_who_paid_on_session_just_before_the_deadline_is_not_canceled(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    no_polling = settings.model_copy(update={"checkout_poll_interval": 0.0})
    start = clock.now
    sub_id, renewal_id, session_id = _requires_action(
        engine, faststar, no_polling, clock, make_subscription
    )
    clock.now = start + timedelta(days=6, hours=23)
    sandbox.complete_checkout(session_id)
    [paid] = sandbox.charges()
    clock.now = start + timedelta(days=7, minutes=1)
    run_sweep(engine, faststar, no_polling, clock)

    booked = sc.renewal(engine, renewal_id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", paid["payment_intent_id"])
    assert sc.subscription(engine, sub_id).status == "active"
    assert sc.FINAL_FAILURE_KIND not in sc.outbox_kinds(engine, renewal_id=renewal_id)


def test_the_final_action_waits_for_faststar_to_confirm_the_session_was_not_paid(
    engine: Engine,
    faststar: FastStarClient,
    unreachable: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    no_polling = settings.model_copy(update={"checkout_poll_interval": 0.0})
    start = clock.now
    sub_id, renewal_id, _ = _requires_action(engine, faststar, no_polling, clock, make_subscription)
    # The customer never pays, but at the deadline FastStar cannot be asked.
    clock.now = start + timedelta(days=7, minutes=1)
    run_sweep(engine, unreachable, no_polling, clock)
    assert sc.subscription(engine, sub_id).status == "action_required"
    assert sc.renewal(engine, renewal_id).status == "requires_action"

    clock.advance(hours=25)
    run_sweep(engine, unreachable, no_polling, clock)
    run_sweep(engine, unreachable, no_polling, clock)
    assert sc.subscription(engine, sub_id).status == "action_required"
    assert sc.renewal(engine, renewal_id).status == "requires_action"
    open_for_renewal = [r["kind"] for r in sc.open_reviews(engine) if r["renewal_id"] == renewal_id]
    assert open_for_renewal == ["final_action_unconfirmed"]

    # FastStar answers again: the session was not paid, so the final action applies now.
    clock.advance(hours=1)
    run_sweep(engine, faststar, no_polling, clock)
    assert sc.subscription(engine, sub_id).status == "canceled"
    assert sc.renewal(engine, renewal_id).status == "failed"
    assert sandbox.charges() == []


# ----------------------------------------------------------------- 6: documented events


def test_a_documented_event_during_the_charge_call_gives_no_false_review(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    sc.sweep_only(engine, settings, clock)  # materialises the renewal, charges nothing
    renewal_id = sc.only_renewal(engine, sub_id).id
    order = sc.begin(engine, settings, clock, renewal_id)
    outcome = faststar.charge_off_session(
        order.customer_id,
        order.payment_method_id,
        order.amount,
        order.currency,
        idempotency_key=order.idempotency_key,
    )
    assert isinstance(outcome, Paid)
    # The event overtakes the charge's response: our attempt is still in flight.
    event = _payment_event(sandbox, outcome.payment_intent_id, "documented")
    inbox_id = sc.deliver_event(engine, settings, clock, event)
    assert sc.open_reviews(engine) == []

    sc.record(engine, settings, clock, order, outcome)
    clock.advance(minutes=1)
    run_sweep(engine, faststar, settings, clock)
    assert sc.inbox_event(engine, inbox_id).status == "processed"
    assert sc.open_reviews(engine) == []
    booked = sc.renewal(engine, renewal_id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", outcome.payment_intent_id)


def test_a_documented_event_for_an_unknown_charge_is_reviewed_after_its_retries(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("lost_response", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    unknown = sc.only_renewal(engine, sub_id)
    assert unknown.status == "unknown"
    [charge] = sandbox.charges()
    pi = str(charge["payment_intent_id"])
    sc.deliver_event(engine, settings, clock, _payment_event(sandbox, pi, "documented"))
    # Nothing names the customer: the event is looked at again on a backoff before an
    # operator is asked.
    assert sc.open_reviews(engine) == []

    clock.advance(minutes=16)
    run_sweep(engine, faststar, settings, clock)
    assert len(_reviews_of(engine, pi)) == 1

    sc.operator_paid(engine, settings, clock, unknown.id, pi)
    booked = sc.renewal(engine, unknown.id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", pi)
    assert _reviews_of(engine, pi) == [], "the booked payment is still listed for review"


# ----------------------------------------------------------------- 7: refused retry


def test_a_dunning_retry_refused_before_sending_ends_the_subscription(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("declined", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    declined = sc.only_renewal(engine, sub_id)
    assert declined.status == "retry_scheduled"
    assert sc.subscription(engine, sub_id).status == "past_due"
    assert declined.wake_at is not None

    # The cap is lowered below the price before the retry: the retry is refused unsent.
    capped = settings.model_copy(update={"max_charge_amount": declined.amount - 1})
    clock.now = declined.wake_at
    run_sweep(engine, faststar, capped, clock)

    assert sc.renewal(engine, declined.id).status == "failed"
    assert sc.subscription(engine, sub_id).status == "canceled"
    assert sc.FINAL_FAILURE_KIND in sc.outbox_kinds(engine, renewal_id=declined.id)
    rows = sc.audit_rows(engine, subscription_id=sub_id)
    assert len([r for r in rows if r.to_status == "canceled"]) == 1  # the final action
    assert any("exceeds the per-charge cap" in (r.reason or "") for r in rows)
    assert sandbox.charges() == []


# ----------------------------------------------------------------- 8: unpaid, then paid


@pytest.mark.parametrize("shape", SHAPES)
def test_an_unpaid_subscription_settles_when_the_customer_pays_on_session(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    shape: str,
) -> None:
    unpaid = settings.model_copy(update={"final_action": "unpaid"})
    start = clock.now
    sub_id, renewal_id, session_id = _requires_action(
        engine, faststar, unpaid, clock, make_subscription
    )
    clock.now = start + timedelta(days=7, minutes=1)
    run_sweep(engine, faststar, unpaid, clock)
    assert sc.subscription(engine, sub_id).status == "unpaid"

    # Later the customer pays the link after all. In the sandbox shape the event names the
    # checkout session; in the documented shape it names nothing of ours, and the renewal's
    # follow-up, still watching its open session after the final action, finds the payment.
    clock.advance(hours=2)
    sandbox.complete_checkout(session_id)
    [paid] = sandbox.charges()
    sc.deliver_event(
        engine, unpaid, clock, _payment_event(sandbox, paid["payment_intent_id"], shape)
    )
    if shape == "documented":
        clock.advance(minutes=16)
        run_sweep(engine, faststar, unpaid, clock)

    booked = sc.renewal(engine, renewal_id)
    assert (booked.status, booked.payment_intent_id) == ("succeeded", paid["payment_intent_id"])
    assert sc.subscription(engine, sub_id).status == "active"
    assert sc.open_reviews(engine) == []


# ----------------------------------------------------------------- 9: trusted keys


def test_a_trusted_key_unknown_that_can_no_longer_be_charged_is_escalated_once(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    trusted = settings.model_copy(update={"trust_idempotency_keys": True})
    sub_id = make_subscription("lost_response", renews_at=clock.now)
    run_sweep(engine, faststar, trusted, clock)
    unknown = sc.only_renewal(engine, sub_id)
    assert unknown.status == "unknown"
    assert len(sandbox.charges()) == 1
    # An operator cancels the subscription (no cancel service exists: set directly).
    sc.cancel_by_operator(engine, sub_id, clock.now)

    steps = [timedelta(seconds=trusted.lease_seconds)] * 5 + list(trusted.unknown_recheck)
    for step in steps:
        clock.advance(seconds=step.total_seconds())
        run_sweep(engine, faststar, trusted, clock)

    escalations = [
        r for r in sc.audit_rows(engine, renewal_id=unknown.id) if r.action == "unknown_escalated"
    ]
    assert len(escalations) == 1
    assert len(sandbox.charges()) == 1  # nothing sent again
    assert sc.renewal(engine, unknown.id).status == "unknown"


# ----------------------------------------------------------------- 10: the audit trail


def test_resolving_an_unknown_retry_as_paid_audits_the_subscription_becoming_active(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("declined", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    declined = sc.only_renewal(engine, sub_id)
    assert sc.subscription(engine, sub_id).status == "past_due"
    assert declined.wake_at is not None
    # The customer's new card charges, but the retry's response is lost.
    card = sc.attach_card(settings, sandbox, sc.customer_of(engine, sub_id), CARDS["lost_response"])
    sc.switch_card(engine, sub_id, card, clock.now)
    clock.now = declined.wake_at
    run_sweep(engine, faststar, settings, clock)
    assert sc.renewal(engine, declined.id).status == "unknown"
    [charge] = sandbox.charges()

    sc.operator_paid(engine, settings, clock, declined.id, str(charge["payment_intent_id"]))
    assert sc.subscription(engine, sub_id).status == "active"
    moves = [(r.from_status, r.to_status) for r in sc.audit_rows(engine, subscription_id=sub_id)]
    assert ("past_due", "active") in moves
