"""After a 402: the link email, reminders on day 3 and day 6 (a dead link replaced by a fresh
Checkout Session first), then the final action on day 7. Time travel with the test clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.sandbox.testing import RunningSandbox
from tests.notifications.conftest import plain_text
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_sweep, view
from tests.support.smtp import Mailbox


def test_reminders_link_refresh_and_final_action(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    start = clock.now
    sub_id = make_subscription("sca", renews_at=start)
    run_sweep(engine, faststar, smtp_settings, clock)
    first = view(engine, sub_id)["renewals"][0]
    [link_email] = mailbox.messages
    assert first["checkout_url"] in plain_text(link_email)
    assert "08 January 2026, 09:00 UTC" in plain_text(link_email)  # when the final action comes

    clock.now = start + timedelta(days=2, hours=23)
    run_sweep(engine, faststar, smtp_settings, clock)
    assert len(mailbox.messages) == 1  # nothing before day 3

    clock.now = start + timedelta(days=3)
    run_sweep(engine, faststar, smtp_settings, clock)
    run_sweep(engine, faststar, smtp_settings, clock)
    assert len(mailbox.messages) == 2
    reminder = mailbox.messages[1]
    assert reminder["Subject"].startswith("Reminder:")
    assert first["checkout_url"] in plain_text(reminder)  # the link is still open: reused
    assert "last reminder" not in plain_text(reminder)

    sandbox.expire_checkout(first["checkout_session_id"])
    clock.now = start + timedelta(days=6)
    run_sweep(engine, faststar, smtp_settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["checkout_session_id"] != first["checkout_session_id"]
    assert renewal["checkout_url"] != first["checkout_url"]
    last = mailbox.messages[2]
    assert renewal["checkout_url"] in plain_text(last)
    assert first["checkout_url"] not in plain_text(last)
    assert "This is our last reminder" in plain_text(last)
    assert faststar.get_checkout_session(renewal["checkout_session_id"]).status == "open"

    clock.now = start + timedelta(days=7)
    run_sweep(engine, faststar, smtp_settings, clock)
    clock.now = start + timedelta(days=8)
    run_sweep(engine, faststar, smtp_settings, clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "canceled"
    assert sub["renewals"][0]["status"] == "failed"
    assert len(mailbox.messages) == 4
    assert mailbox.messages[3]["Subject"].startswith("We could not collect")
    assert "has been canceled" in plain_text(mailbox.messages[3])
    actions = audit_actions(engine, sub_id)
    assert actions.count("checkout_session_opened") == 2
    assert "renewal_action_expired" in actions
    assert sandbox.charges() == []


def test_after_downtime_one_reminder_covers_all_that_were_due(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    start = clock.now
    make_subscription("sca", renews_at=start)
    run_sweep(engine, faststar, smtp_settings, clock)
    clock.now = start + timedelta(days=6, hours=12)  # asleep through day 3 and day 6
    run_sweep(engine, faststar, smtp_settings, clock)
    run_sweep(engine, faststar, smtp_settings, clock)
    subjects = [m["Subject"] for m in mailbox.messages]
    assert len(subjects) == 2
    assert "This is our last reminder" in plain_text(mailbox.messages[1])


def test_the_timeline_ends_even_when_no_checkout_link_can_ever_be_made(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    # Merchant of record without a price: FastStar cannot be asked for a session, so there
    # is never a link to send. The renewal must not wait for one forever.
    broken = smtp_settings.model_copy(update={"merchant_of_record": True})
    start = clock.now
    sub_id = make_subscription("sca", renews_at=start)
    for day in (0, 3, 6):
        clock.now = start + timedelta(days=day)
        run_sweep(engine, faststar, broken, clock)
        assert mailbox.messages == []  # no link, no link email
    assert view(engine, sub_id)["status"] == "action_required"
    clock.now = start + timedelta(days=7)
    run_sweep(engine, faststar, broken, clock)
    sub = view(engine, sub_id)
    assert (sub["status"], sub["renewals"][0]["status"]) == ("canceled", "failed")
    [final] = mailbox.messages
    assert final["Subject"].startswith("We could not collect")
    assert "the payment was not confirmed" in plain_text(final)


def test_unpaid_as_the_final_action(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    unpaid = smtp_settings.model_copy(
        update={"final_action": "unpaid", "action_reminder_days": "2", "action_expire_days": 4}
    )
    start = clock.now
    sub_id = make_subscription("sca", renews_at=start)
    run_sweep(engine, faststar, unpaid, clock)
    assert "09:00 UTC, your subscription will be unpaid" in plain_text(mailbox.messages[0])
    for day in (1, 2, 3, 4):
        clock.now = start + timedelta(days=day)
        run_sweep(engine, faststar, unpaid, clock)
    subjects = [m["Subject"].split(":")[0] for m in mailbox.messages]
    assert subjects == [
        "Action required",
        "Reminder",
        "We could not collect 19.99 USD for your Example Merchant subscription",
    ]
    assert "This is our last reminder" in plain_text(mailbox.messages[1])  # the only one
    assert "now unpaid" in plain_text(mailbox.messages[2])
    assert view(engine, sub_id)["status"] == "unpaid"
