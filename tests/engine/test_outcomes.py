"""Every test card through the engine's services, on SQLite and PostgreSQL, against the real
sandbox over a socket. The sandbox's executed-charge log is the ground truth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.operators import unknown_renewals
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_sweep, view


def _charges_for(sandbox: RunningSandbox, customer_id: str) -> list[dict[str, object]]:
    return [c for c in sandbox.charges() if c["customer_id"] == customer_id]


def test_success_books_the_charge_and_advances_the_period(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)

    sub = view(engine, sub_id)
    assert sub["status"] == "active"
    [renewal] = sub["renewals"]
    assert renewal["status"] == "succeeded"
    assert renewal["payment_intent_id"].startswith("pi_")
    assert sub["current_period_start"] == renewal["period_start"]
    assert sub["next_renewal_at"] == "2026-02-01T09:00:00+00:00"
    [charge] = _charges_for(sandbox, sub["customer_id"])
    assert charge["payment_intent_id"] == renewal["payment_intent_id"]
    assert charge["amount"] == 1999
    assert charge["idempotency_key"] == renewal["attempts"][0]["idempotency_key"]

    # Nothing more is due until the next period starts; then exactly one more charge.
    run_sweep(engine, faststar, settings, clock)
    assert len(_charges_for(sandbox, sub["customer_id"])) == 1
    clock.now = clock.now.replace(month=2)
    run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert [r["status"] for r in sub["renewals"]] == ["succeeded", "succeeded"]
    assert len(_charges_for(sandbox, sub["customer_id"])) == 2


def test_sca_moves_to_action_required_and_emails_the_checkout_link(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    tmp_path: Path,
) -> None:
    sub_id = make_subscription("sca", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)

    sub = view(engine, sub_id)
    assert sub["status"] == "action_required"
    [renewal] = sub["renewals"]
    assert renewal["status"] == "requires_action"
    assert renewal["checkout_session_id"].startswith("cs_")
    assert renewal["checkout_url"]
    assert _charges_for(sandbox, sub["customer_id"]) == []
    session = faststar.get_checkout_session(renewal["checkout_session_id"])
    assert (session.amount_total, session.currency) == (1999, "USD")

    [eml] = (tmp_path / "mail").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"].addresses[0].domain == "example.com"
    assert "Action required" in str(message["Subject"])
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert renewal["checkout_url"] in text
    assert renewal["checkout_url"] in html

    # A second sweep neither charges nor emails again.
    run_sweep(engine, faststar, settings, clock)
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    assert view(engine, sub_id)["renewals"][0]["attempts"][0]["status"] == "requires_action"


def test_decline_runs_the_dunning_timeline_then_cancels(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    start = clock.now
    sub_id = make_subscription("declined", renews_at=start)
    run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "past_due"
    [renewal] = sub["renewals"]
    assert renewal["status"] == "retry_scheduled"
    assert renewal["next_action"] == "charge"
    assert renewal["next_action_at"] == (start + timedelta(days=3)).isoformat()
    assert renewal["attempts"][0]["decline_code"] == "card_declined"

    clock.now = start + timedelta(days=2, hours=23)  # not yet due
    run_sweep(engine, faststar, settings, clock)
    assert len(view(engine, sub_id)["renewals"][0]["attempts"]) == 1

    for day in (3, 5, 7):
        clock.now = start + timedelta(days=day)
        run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "canceled"
    [renewal] = sub["renewals"]
    assert renewal["status"] == "failed"
    assert [a["status"] for a in renewal["attempts"]] == ["declined"] * 4
    keys = {a["idempotency_key"] for a in renewal["attempts"]}
    assert len(keys) == 4  # each dunning retry is a new attempt with its own key
    assert _charges_for(sandbox, sub["customer_id"]) == []
    assert "subscription_final_action_canceled" in audit_actions(engine, sub_id)


def test_hard_decline_skips_futile_retries(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("expired", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "canceled"
    assert sub["renewals"][0]["status"] == "failed"
    assert sub["renewals"][0]["attempts"][0]["decline_code"] == "expired_card"


def test_insufficient_funds_is_a_soft_decline(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("insufficient_funds", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "past_due"
    assert sub["renewals"][0]["attempts"][0]["decline_code"] == "insufficient_funds"


def test_unknown_outcomes_are_never_guessed_and_never_retried_blindly(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    subs = {
        card: make_subscription(card, renews_at=clock.now)
        for card in ("error_500", "lost_response", "error_after_charge")
    }
    run_sweep(engine, faststar, settings, clock)
    for _ in range(3):
        clock.advance(hours=2)
        run_sweep(engine, faststar, settings, clock)
    executed = {"error_500": 0, "lost_response": 1, "error_after_charge": 1}
    for card, sub_id in subs.items():
        sub = view(engine, sub_id)
        [renewal] = sub["renewals"]
        assert renewal["status"] == "unknown", card
        assert [a["status"] for a in renewal["attempts"]] == ["unknown"], card
        assert renewal["attempts"][0]["sends"] == 1, card
        assert len(_charges_for(sandbox, sub["customer_id"])) == executed[card], card


def test_lost_response_with_trusted_keys_is_settled_by_a_same_key_retry(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    trusting = settings.model_copy(update={"trust_idempotency_keys": True})
    sub_id = make_subscription("lost_response", renews_at=clock.now)
    run_sweep(engine, faststar, trusting, clock)
    assert view(engine, sub_id)["renewals"][0]["status"] == "unknown"

    clock.advance(minutes=5)
    run_sweep(engine, faststar, trusting, clock)
    sub = view(engine, sub_id)
    [renewal] = sub["renewals"]
    assert renewal["status"] == "succeeded"
    [attempt] = renewal["attempts"]
    assert attempt["sends"] == 2
    [charge] = _charges_for(sandbox, sub["customer_id"])
    assert charge["payment_intent_id"] == renewal["payment_intent_id"]
    assert sub["status"] == "active"


def test_not_sent_retries_the_same_attempt_with_the_same_key(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    unused_port: int,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    with FastStarClient(f"http://127.0.0.1:{unused_port}/api/v1", sandbox.api_key) as down:
        run_sweep(engine, down, settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "retry_scheduled"
    assert renewal["attempts"][0]["status"] == "not_sent"
    key = renewal["attempts"][0]["idempotency_key"]

    clock.advance(seconds=10)
    with FastStarClient(sandbox.base_url, sandbox.api_key) as up:
        run_sweep(engine, up, settings, clock)
    sub = view(engine, sub_id)
    [renewal] = sub["renewals"]
    assert renewal["status"] == "succeeded"
    [attempt] = renewal["attempts"]
    assert (attempt["idempotency_key"], attempt["sends"]) == (key, 2)
    assert [c["idempotency_key"] for c in _charges_for(sandbox, sub["customer_id"])] == [key]


def test_rate_limited_charge_waits_at_least_retry_after(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_ids = [make_subscription("success", renews_at=clock.now) for _ in range(3)]
    sandbox.configure(rate_limit_per_s=0.001)
    run_sweep(engine, faststar, settings, clock)
    sandbox.configure(rate_limit_per_s=None)
    statuses = sorted(view(engine, s)["renewals"][0]["status"] for s in sub_ids)
    # The bucket may let the first request through; the rest are throttled and not sent.
    assert "retry_scheduled" in statuses
    for sub_id in sub_ids:
        renewal = view(engine, sub_id)["renewals"][0]
        if renewal["status"] == "retry_scheduled":
            assert renewal["attempts"][0]["status"] == "not_sent"
            assert "429" in (renewal["last_error"] or "") or renewal["last_error"]


def test_unknown_renewals_are_listed_for_operators(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    lost = make_subscription("lost_response", renews_at=clock.now)
    make_subscription("success", renews_at=clock.now)
    run_sweep(engine, faststar, settings, clock)
    with unit_of_work(engine) as session:
        [row] = unknown_renewals(session)
    renewal = view(engine, lost)["renewals"][0]
    assert (row["subscription_id"], row["renewal_id"]) == (lost, renewal["id"])
    assert row["idempotency_key"] == renewal["attempts"][0]["idempotency_key"]
    assert "RemoteProtocolError" in row["reason"]


def test_trusted_same_key_retries_stop_at_the_horizon_and_escalate(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    trusting = settings.model_copy(update={"trust_idempotency_keys": True})
    sub_id = make_subscription("error_500", renews_at=clock.now)  # unknown every time
    run_sweep(engine, faststar, trusting, clock)
    clock.advance(minutes=5)
    run_sweep(engine, faststar, trusting, clock)
    assert view(engine, sub_id)["renewals"][0]["attempts"][0]["sends"] == 2
    clock.advance(hours=21)  # past the 20 h horizon
    run_sweep(engine, faststar, trusting, clock)
    clock.advance(days=2)
    run_sweep(engine, faststar, trusting, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "unknown"
    assert renewal["attempts"][0]["sends"] == 2  # no third send
    assert renewal["next_action"] == "recheck"  # the janitor keeps looking, daily
    assert audit_actions(engine, sub_id).count("unknown_escalated") == 1
    assert sandbox.charges() == []
