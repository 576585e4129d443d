"""The read views on SQLite and PostgreSQL, over engine-made states (real sandbox charges):
amounts in major units per currency, the next action and its date, the decline reason, the
timeline, how to settle unknown rows, and the report's per-currency figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import Subscription
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.operators import unknown_renewals
from renewals.services.report import build_report
from renewals.services.subscriptions import list_subscriptions, subscription_views
from renewals.services.views import timeline, with_settlements
from tests.support.factories import CARDS, Clock
from tests.support.inline import run_sweep
from tests.support.scenarios import attach_card, customer_of, switch_card


def _views(engine: Engine) -> dict[int, dict[str, Any]]:
    with unit_of_work(engine) as session:
        return {v["id"]: v for v in subscription_views(session, list_subscriptions(session))}


def test_views_and_report(
    engine: Engine,
    settings: Settings,
    sandbox: RunningSandbox,
    faststar: FastStarClient,
    make_subscription: Callable[..., int],
    clock: Clock,
) -> None:
    start = clock.now
    with unit_of_work(engine) as session:
        assert (
            build_report(session, now=start, since=start - timedelta(days=1))["renewals_by_outcome"]
            == []
        )
    usd = make_subscription("success", amount=1999, currency="USD", renews_at=start)
    jpy = make_subscription("success", amount=1500, currency="JPY", renews_at=start)
    bhd = make_subscription(
        "success", amount=1500, currency="BHD", renews_at=start + timedelta(days=10)
    )
    declined = make_subscription("declined", amount=500, currency="USD", renews_at=start)
    sca = make_subscription("sca", amount=700, currency="EUR", renews_at=start)
    lost = make_subscription("lost_response", amount=900, currency="USD", renews_at=start)
    run_sweep(engine, faststar, settings, clock)

    views = _views(engine)
    assert [views[i]["amount_display"] for i in (usd, jpy, bhd)] == [
        "19.99 USD",
        "1,500 JPY",
        "1.500 BHD",
    ]
    assert views[usd]["amount"] == 1999  # --json keeps minor units beside the display
    assert (views[usd]["next_action"], views[usd]["next_action_at"]) == (
        "renew",
        (start.replace(month=2)).isoformat(),
    )
    assert views[bhd]["next_action_at"] == (start + timedelta(days=10)).isoformat()
    assert views[declined]["status"] == "past_due"
    assert views[declined]["next_action"] == "retry charge (after 1 decline(s))"
    assert views[declined]["next_action_at"] == (start + timedelta(days=3)).isoformat()
    assert views[declined]["decline_reason"] == "card_declined"
    assert views[sca]["next_action"] == "follow up checkout"
    assert views[lost]["next_action"] == "check unknown outcome"
    assert views[usd]["decline_reason"] is None

    with unit_of_work(engine) as session:
        events = timeline(session, declined)
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    kinds = [e["kind"] for e in events]
    assert {"period", "attempt", "email", "audit"} <= set(kinds)
    assert any("card_declined" in e["text"] for e in events if e["kind"] == "attempt")
    emails = [e for e in events if e["kind"] == "email"]
    assert emails and all("***@" in e["text"] for e in emails)  # never a full address
    # Each names its id, what `renewals resend-email` takes.
    assert all(e["text"].startswith(f"email {e['message_id']}: ") for e in emails)

    # The declined customer switches to a good card: the first retry recovers the period.
    good = attach_card(settings, sandbox, customer_of(engine, declined), CARDS["success"])
    switch_card(engine, declined, good, clock.now)
    clock.advance(days=3)
    run_sweep(engine, faststar, settings, clock)
    assert _views(engine)[declined]["status"] == "active"

    with unit_of_work(engine) as session:
        report = build_report(session, now=clock.now, since=start - timedelta(days=1))
        unknown, _ = with_settlements(unknown_renewals(session), [])
        assert session.get_one(Subscription, bhd).next_period_index == 0
    outcomes = {row["outcome"]: row for row in report["renewals_by_outcome"]}
    assert outcomes["succeeded"]["count"] == 3
    # Per currency, never summed across currencies.
    assert outcomes["succeeded"]["amounts"] == [
        {"currency": "JPY", "amount": 1500, "display": "1,500 JPY"},
        {"currency": "USD", "amount": 2499, "display": "24.99 USD"},
    ]
    assert outcomes["requires_action"]["amounts"] == [
        {"currency": "EUR", "amount": 700, "display": "7.00 EUR"}
    ]
    assert outcomes["unknown"]["count"] == 1
    assert report["recovered"] == {
        "count": 1,
        "amounts": [{"currency": "USD", "amount": 500, "display": "5.00 USD"}],
    }
    assert report["sca"] == {
        "required": 1,
        "paid_on_session": 0,
        "waiting": 1,
        "expired": 0,
        "completion_rate": 0.0,
    }
    assert report["subscriptions"]["active"] == 5  # the unknown one stays active
    assert report["subscriptions"]["action_required"] == 1
    assert report["unknown_backlog"]["count"] == 1
    assert report["unknown_backlog"]["oldest_age_hours"] >= 72
    assert [row["settle"] for row in unknown] == [
        f"renewals reconcile {unknown[0]['renewal_id']} --paid pi_… | --not-charged --reason …"
    ]
    assert unknown[0]["amount_display"] == "9.00 USD"
