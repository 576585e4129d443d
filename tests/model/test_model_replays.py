"""Plain replays of the model's steps (``engine_model.EngineModel``): the paths the Hypothesis
model must keep exploring, pinned, and proof that its invariants fail when the engine
misbehaves. A failure the model finds is added here the same way, named after what it
found."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from renewals import transitions
from renewals.models import ChargeAttempt, Renewal, Subscription
from renewals.models.db import unit_of_work
from tests.model.engine_model import EngineModel, World, assert_invariants, assert_settled


@pytest.fixture
def model(model_world: World) -> Iterator[EngineModel]:
    model = EngineModel(model_world, cards=["success", "success"])
    yield model
    model.close()


def test_a_worker_dying_after_the_call_leaves_an_unknown_the_operator_books(
    model: EngineModel,
) -> None:
    model.sweep()
    model.crash(0, after_call=True)  # FastStar charged; the answer never recorded
    model.check()
    model.advance(minutes=6)  # past the lease
    model.sweep()
    model.check()
    with unit_of_work(model.engine) as session:
        statuses = sorted(session.scalars(select(Renewal.status)))
    assert "unknown" in statuses
    model.reconcile(0)
    model.settle()
    assert_settled(model)
    with unit_of_work(model.engine) as session:
        assert set(session.scalars(select(Renewal.status))) == {"succeeded"}
    assert len(model.world.sandbox.charges()) == 2


def test_a_lost_answer_a_redelivery_and_documented_webhooks_charge_once(
    model: EngineModel,
) -> None:
    model.set_card(0, "lost_response")
    model.sweep()
    model.deliver_all()
    model.redeliver(0)
    model.webhook(0, documented=True)
    model.webhook(0, documented=True)  # the same event again
    model.deliver_all()
    model.advance(minutes=16)
    model.sweep()
    model.deliver_all()
    model.reconcile(0)
    model.settle()
    assert_settled(model)
    assert len(model.world.sandbox.charges()) == 2


def test_bad_input_never_reaches_faststar(model: EngineModel) -> None:
    model.corrupt_amount(0, 50_000_000)
    model.detach_card(1)
    model.sweep()
    model.deliver_all()
    model.advance(days=31)
    model.sweep()
    model.deliver_all()
    model.settle()
    assert_settled(model)
    assert model.world.sandbox.charges() == []


def test_the_invariants_catch_a_period_charged_twice(model: EngineModel) -> None:
    """A second attempt sent for a period already paid (what a broken claim would do)."""
    model.sweep()
    model.deliver_all()
    model.check()
    with unit_of_work(model.engine) as session:
        renewal = session.scalars(
            select(Renewal).where(Renewal.subscription_id == model.customers[0].subscription_id)
        ).first()
        assert renewal is not None and renewal.status == "succeeded"
        first = session.scalars(
            select(ChargeAttempt).where(ChargeAttempt.renewal_id == renewal.id)
        ).one()
        second = transitions.new_attempt(
            session, renewal, number=2, idempotency_key="rnw_model_double", now=model.clock()
        )
        session.flush()
        order = (first.amount, first.currency, second.idempotency_key)
    customer = model.customers[0]
    model.faststar.charge_off_session(
        customer.customer_id,
        customer.payment_method_id,
        order[0],
        order[1],
        idempotency_key=order[2],
    )
    with pytest.raises(AssertionError, match="charged 2 times"):
        assert_invariants(model)


def test_an_unknown_charge_booked_after_the_subscription_was_canceled(
    model: EngineModel,
) -> None:
    """Found by the model (long profile): the charge's answer is lost (unknown), the
    operator cancels at the period's end, the period ends (the sweep cancels it), and the
    operator books the payment. Booking skips the subscription's transition (canceled takes
    no ``charge_succeeded``) and the log line saying so passed ``event=`` to structlog,
    whose first argument is named ``event``: a TypeError, so every reconcile (and any
    outcome landing on a paused or canceled subscription) failed, the payment unbooked."""
    model.set_card(0, "lost_response")
    model.sweep()
    model.deliver_all()
    model.cancel(0, at_period_end=True)
    model.advance(days=32)
    model.sweep()
    model.deliver_all()
    with unit_of_work(model.engine) as session:
        assert session.get_one(Subscription, model.customers[0].subscription_id).status == (
            "canceled"
        )
    result = model.command(
        "reconcile", renewal_id=_unknown_renewal(model), paid=_only_charge(model)
    )
    assert result["status"] == "done", result
    model.settle()
    assert_settled(model)


def _unknown_renewal(model: EngineModel) -> int:
    with unit_of_work(model.engine) as session:
        return session.scalars(select(Renewal.id).where(Renewal.status == "unknown")).one()


def _only_charge(model: EngineModel) -> str:
    customer = model.customers[0].payment_method_id
    [charge] = [c for c in model.world.sandbox.charges() if c["payment_method_id"] == customer]
    return str(charge["payment_intent_id"])
