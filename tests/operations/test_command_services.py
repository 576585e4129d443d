"""Operator commands run in-process through the same runner the tasks use, on SQLite and
PostgreSQL: the state each one changes, its audit rows, and its refusals.
(tests/processes/test_operator_commands.py drives the same through a real worker.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import ReviewKind
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models import AuditEvent, OperatorCommand, OutboxMessage, PaymentReview, Renewal
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.charge_checks import Skipped, begin_charge
from renewals.services.commands import InvalidCommand, command_view, dry_run, run_command, submit
from tests.support.celery_processes import black_hole
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_follow_ups, run_sweep, view

ACTOR = "operator:alice"
Make = Callable[..., int]


class Ops:
    """Send a command and run it as the task would, with the test's clock."""

    def __init__(
        self, engine: Engine, client: FastStarClient, settings: Settings, clock: Clock
    ) -> None:
        self.engine, self.client, self.settings, self.clock = engine, client, settings, clock

    def __call__(self, name: str, *, client: FastStarClient | None = None, **args: Any) -> Any:
        command_id = submit(self.engine, name, args, actor=ACTOR, now=self.clock())
        follow = run_command(
            self.settings, self.engine, client or self.client, self.clock, command_id
        )
        run_follow_ups(self.engine, self.client, self.settings, self.clock, follow)
        with unit_of_work(self.engine) as session:
            return command_view(session, command_id)

    def done(self, name: str, **args: Any) -> str:
        result = self(name, **args)
        assert result["status"] == "done", result
        return str(result["result"])

    def refused(self, name: str, **args: Any) -> str:
        result = self(name, **args)
        assert result["status"] == "refused", result
        return str(result["result"])


@pytest.fixture
def ops(engine: Engine, faststar: FastStarClient, settings: Settings, clock: Clock) -> Ops:
    return Ops(engine, faststar, settings, clock)


def _renewal(engine: Engine, sub_id: int) -> Renewal:
    with unit_of_work(engine) as session:
        return session.scalars(
            select(Renewal).where(Renewal.subscription_id == sub_id).order_by(Renewal.id.desc())
        ).first()  # type: ignore[return-value]


def _unknown(engine: Engine, settings: Settings, clock: Clock, api_key: str) -> None:
    with black_hole() as port:
        url = f"http://127.0.0.1:{port}/api/v1"
        with FastStarClient(url, api_key, timeout=httpx.Timeout(0.5)) as dead:
            run_sweep(engine, dead, settings, clock)


def test_halt_stops_every_charge_until_unhalt(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    assert "halted" in ops.done("halt", reason="FastStar incident")
    assert "halted already" in ops.refused("halt")
    claimed = run_sweep(engine, faststar, settings, clock)
    # Materialised, but nothing claimed to charge, and a charge message changes nothing.
    assert claimed.ids(Work.CHARGE) == []
    renewal = _renewal(engine, sub_id)
    assert renewal.status == "pending"
    with unit_of_work(engine) as session:
        assert begin_charge(session, renewal.id, now=clock(), settings=settings) == Skipped(
            "charges are halted"
        )
    assert sandbox.charges() == []

    assert "resumed" in ops.done("unhalt")
    assert "not halted" in ops.refused("unhalt")
    clock.advance(seconds=1)
    run_sweep(engine, faststar, settings, clock)
    assert _renewal(engine, sub_id).status == "succeeded"
    assert len(sandbox.charges()) == 1
    with unit_of_work(engine) as session:
        switches = session.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.reason)
            .where(AuditEvent.entity == "switch")
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(row) for row in switches] == [
        ("halt_switched_on", ACTOR, "FastStar incident"),
        ("halt_switched_off", ACTOR, "unhalted by an operator"),
    ]


def test_pause_holds_a_due_retry_and_resume_charges_it_now(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("declined", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    assert view(engine, sub_id)["status"] == "past_due"
    assert "past_due -> paused" in ops.done("pause", subscription_id=sub_id, reason="support")
    assert "paused already" in ops.refused("pause", subscription_id=sub_id)
    assert f"is paused: `renewals resume {sub_id}`" in ops.refused("retry", subscription_id=sub_id)

    clock.advance(days=4)  # the dunning retry falls due while paused: held, not abandoned
    run_sweep(engine, faststar, settings, clock)
    renewal = _renewal(engine, sub_id)
    assert (renewal.status, renewal.wake) == ("retry_scheduled", None)
    assert "renewal_held" in audit_actions(engine, sub_id)
    assert len(view(engine, sub_id)["renewals"][0]["attempts"]) == 1  # nothing sent

    result = ops.done("resume", subscription_id=sub_id)
    assert f"renewal(s) {renewal.id} charged now" in result
    assert len(view(engine, sub_id)["renewals"][0]["attempts"]) == 2
    assert view(engine, sub_id)["status"] == "past_due"  # declined again, dunning goes on
    assert "not paused" in ops.refused("resume", subscription_id=sub_id)


def test_resume_does_not_bill_periods_that_ended_while_paused(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now, interval="week")
    run_sweep(engine, faststar, settings, clock)
    ops.done("pause", subscription_id=sub_id)
    clock.advance(days=7 * 3 + 1)  # periods 1 and 2 begin and end while paused
    run_sweep(engine, faststar, settings.model_copy(update={"catch_up": "all"}), clock)
    assert len(view(engine, sub_id)["renewals"]) == 1
    assert "periods [1, 2] ended while paused" in ops.done("resume", subscription_id=sub_id)
    run_sweep(engine, faststar, settings.model_copy(update={"catch_up": "all"}), clock)
    renewals = view(engine, sub_id)["renewals"]
    assert sorted(r["period_index"] for r in renewals) == [0, 3]
    assert all(r["status"] == "succeeded" for r in renewals)


def test_retry_sends_now_and_keeps_the_dunning_schedule(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("declined", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    before = _renewal(engine, sub_id)
    assert (before.status, before.declines) == ("retry_scheduled", 1)
    clock.advance(hours=1)
    assert "counts no dunning failure" in ops.done(
        "retry", subscription_id=sub_id, reason="card topped up"
    )
    after = _renewal(engine, sub_id)
    attempts = view(engine, sub_id)["renewals"][0]["attempts"]
    assert len(attempts) == 2 and attempts[1]["status"] == "declined"
    assert (after.status, after.declines, after.wake_at) == (
        "retry_scheduled",
        1,
        before.wake_at,
    )
    with unit_of_work(engine) as session:
        requested = session.scalars(
            select(AuditEvent.reason).where(AuditEvent.action == "retry_requested")
        ).all()
    assert requested == ["card topped up"]


def test_retry_is_refused_while_the_outcome_is_unknown(
    ops: Ops,
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    _unknown(engine, settings, clock, sandbox.api_key)
    renewal_id = _renewal(engine, sub_id).id
    refused = ops.refused("retry", subscription_id=sub_id)
    assert refused.startswith(f"renewal {renewal_id} is unknown: settle it with")
    assert f"renewals reconcile {renewal_id} --paid pi_" in refused
    assert "no subscription 999999" in ops.refused("pause", subscription_id=999_999)

    # ... and reconcile settles it (the queued form of `renewals reconcile`).
    assert "only an unknown outcome" not in ops.done(
        "reconcile", renewal_id=renewal_id, paid="pi_from_support"
    )
    assert "is succeeded" in ops.refused("reconcile", renewal_id=renewal_id, paid="pi_other")


def _action_required(
    engine: Engine, faststar: FastStarClient, settings: Settings, clock: Clock, make: Make
) -> tuple[int, Any]:
    sub_id = make("sca", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "requires_action" and renewal["checkout_session_id"]
    return sub_id, renewal


def test_cancel_asks_faststar_about_checkout_sessions_first(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Make,
) -> None:
    sub_id, renewal = _action_required(engine, faststar, settings, clock, make_subscription)
    assert "cancel it" in ops.refused("pause", subscription_id=sub_id)
    with black_hole() as port:
        url = f"http://127.0.0.1:{port}/api/v1"
        with FastStarClient(url, sandbox.api_key, timeout=httpx.Timeout(0.5)) as dead:
            refused = ops.refused("cancel", subscription_id=sub_id, client=dead)
    assert "FastStar did not answer" in refused
    assert view(engine, sub_id)["status"] == "action_required"

    sandbox.complete_checkout(renewal["checkout_session_id"])  # the customer pays meanwhile
    booked = ops.refused("cancel", subscription_id=sub_id)
    assert booked.startswith("not canceled: checkout session") and "paid on session" in booked
    assert view(engine, sub_id)["status"] == "active"
    assert view(engine, sub_id)["renewals"][0]["status"] == "succeeded"


def test_cancel_abandons_open_renewals_and_watches_open_sessions(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id, _ = _action_required(engine, faststar, settings, clock, make_subscription)
    assert "action_required -> canceled" in ops.done(
        "cancel", subscription_id=sub_id, reason="customer asked"
    )
    renewal = view(engine, sub_id)["renewals"][0]
    # The session is still open: the follow-up's late watch keeps asking about it.
    assert (renewal["status"], renewal["next_action"]) == ("failed", "follow_up")
    assert "canceled already" in ops.refused("cancel", subscription_id=sub_id)

    other = make_subscription("success", renews_at=clock.now + timedelta(days=3))
    assert "cancels when its period ends" in ops.done(
        "cancel", subscription_id=other, at_period_end=True
    )
    assert "already" in ops.refused("cancel", subscription_id=other, at_period_end=True)
    assert view(engine, other)["status"] == "active"
    clock.advance(days=3, seconds=1)
    run_sweep(engine, faststar, settings, clock)
    assert view(engine, other)["status"] == "canceled"


def test_resend_email_queues_a_new_row(
    ops: Ops,
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)  # a receipt, delivered to the mail folder
    with unit_of_work(engine) as session:
        [(receipt_id, status)] = session.execute(
            select(OutboxMessage.id, OutboxMessage.status).where(
                OutboxMessage.subscription_id == sub_id
            )
        ).all()
    assert status == "sent"
    result = ops.done("resend_email", message_id=receipt_id, reason="customer lost it")
    assert result.startswith(f"email {receipt_id} (receipt, sent) queued again as ")
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.dedupe_key)
            .where(OutboxMessage.subscription_id == sub_id)
            .order_by(OutboxMessage.id)
        ).all()
    assert [r[1] for r in rows] == ["sent", "sent"]  # the copy was delivered too
    assert rows[1][2].startswith(rows[0][2] + ":resend-")

    with unit_of_work(engine) as session:
        pending = transitions.queue_message(
            session,
            now=clock(),
            dedupe_key="x",
            subscription_id=sub_id,
            renewal_id=None,
            kind="receipt",
            recipient="a@example.com",
            context={},
        )
    assert "is pending: it is on its way already" in ops.refused("resend_email", message_id=pending)
    assert "no email 999999" in ops.refused("resend_email", message_id=999_999)


def _review(engine: Engine, clock: Clock, pi: str, amount: int = 1999) -> int:
    with unit_of_work(engine) as session:
        review_id = transitions.open_review(
            session,
            kind=ReviewKind.UNMATCHED,
            now=clock(),
            source="webhook",
            reason="no renewal of ours matches it",
            payment_intent_id=pi,
            amount=amount,
            currency="USD",
        )
    assert review_id is not None
    return review_id


def test_reviews_resolve_refunded_dismissed_and_booked(
    ops: Ops,
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Make,
) -> None:
    refunded = _review(engine, clock, "pi_refunded")
    assert "refunded: sent back" in ops.done(
        "resolve_review", review_id=refunded, resolution="refunded", reason="sent back"
    )
    assert "resolved already" in ops.refused(
        "resolve_review", review_id=refunded, resolution="dismissed", reason="again"
    )

    sub_id = make_subscription("success", renews_at=clock.now)
    _unknown(engine, settings, clock, sandbox.api_key)
    renewal_id = _renewal(engine, sub_id).id
    small = _review(engine, clock, "pi_too_small", amount=5)
    assert "does not pay renewal" in ops.refused(
        "resolve_review", review_id=small, resolution="book", renewal_id=renewal_id, reason="x"
    )
    right = _review(engine, clock, "pi_right")
    result = ops.done(
        "resolve_review", review_id=right, resolution="book", renewal_id=renewal_id, reason="ok"
    )
    assert result == (
        f"review {right}: pi_right booked on renewal {renewal_id}, its unknown attempt "
        "resolved as paid"
    )
    assert view(engine, sub_id)["renewals"][0]["payment_intent_id"] == "pi_right"
    with unit_of_work(engine) as session:
        assert session.get_one(PaymentReview, right).status == "resolved"
    # A paid renewal cannot take a second payment.
    again = _review(engine, clock, "pi_second")
    assert "paid already" in ops.refused(
        "resolve_review", review_id=again, resolution="book", renewal_id=renewal_id, reason="x"
    )


def test_dry_run_says_what_would_happen_and_writes_nothing(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)

    def count(model: Any) -> int:
        with unit_of_work(engine) as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    audits = count(AuditEvent)
    ok, text = dry_run(
        settings, engine, faststar, clock(), "pause", {"subscription_id": sub_id}, actor=ACTOR
    )
    assert (ok, text) == (
        True,
        f"subscription {sub_id}: active -> paused; nothing is charged "
        f"until `renewals resume {sub_id}`",
    )
    ok, text = dry_run(
        settings, engine, faststar, clock(), "resume", {"subscription_id": sub_id}, actor=ACTOR
    )
    assert not ok and "not paused" in text
    assert view(engine, sub_id)["status"] == "active"
    assert (count(AuditEvent), count(OperatorCommand)) == (audits, 0)


def test_arguments_are_validated_before_anything_is_written(engine: Engine, clock: Clock) -> None:
    bad = [
        ("pause", {}),
        ("pause", {"subscription_id": "7"}),
        ("pause", {"subscription_id": True}),
        ("pause", {"subscription_id": 7, "colour": "red"}),
        ("reconcile", {"renewal_id": 1}),
        ("reconcile", {"renewal_id": 1, "paid": "ch_1"}),
        ("reconcile", {"renewal_id": 1, "not_charged": True}),
        ("resolve_review", {"review_id": 1, "resolution": "book", "reason": "x"}),
        ("explode", {}),
    ]
    for name, args in bad:
        with pytest.raises(InvalidCommand):
            submit(engine, name, args, actor=ACTOR, now=clock())
    with unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(OperatorCommand)) == 0


def test_a_command_runs_once_and_a_lost_one_is_handed_on_again(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Make,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now + timedelta(days=1))
    command_id = submit(engine, "pause", {"subscription_id": sub_id}, actor=ACTOR, now=clock())
    with unit_of_work(engine) as session:  # its message is trusted for a minute
        assert transitions.lost_commands(session, now=clock(), lease_seconds=60) == []
    clock.advance(seconds=61)
    with unit_of_work(engine) as session:  # ... then the sweep sends it again
        assert transitions.lost_commands(session, now=clock(), lease_seconds=60) == [
            (command_id, "pause")
        ]
    for _ in range(2):  # delivered twice: runs once
        run_command(settings, engine, faststar, clock, command_id)
    with unit_of_work(engine) as session:
        assert command_view(session, command_id)["status"] == "done"  # type: ignore[index]
        done = session.scalars(
            select(AuditEvent.action).where(AuditEvent.entity == "command")
        ).all()
    assert done == ["command_sent", "command_claimed", "command_done"]
    assert audit_actions(engine, sub_id)[-1] == "subscription_paused_by_operator"
