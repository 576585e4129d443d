"""The emails a charge outcome owes the customer: receipt, payment failed (with the next
attempt's date), final failure. Delivered through a real SMTP server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from tests.notifications.conftest import plain_text
from tests.support.factories import Clock
from tests.support.inline import run_sweep, view
from tests.support.smtp import Mailbox


def test_receipt_after_a_successful_renewal(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now, amount=1500, currency="JPY")
    run_sweep(engine, faststar, smtp_settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    [receipt] = mailbox.messages
    assert receipt["Subject"] == "Receipt: 1,500 JPY paid to Example Merchant"
    text = plain_text(receipt)
    assert renewal["payment_intent_id"] in text
    assert "ending in 4242" in text
    assert "01 January 2026" in text and "01 February 2026" in text


def test_receipts_can_be_switched_off(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    make_subscription("success", renews_at=clock.now)
    quiet = smtp_settings.model_copy(update={"send_receipts": False})
    run_sweep(engine, faststar, quiet, clock)
    assert mailbox.messages == []


def test_each_decline_says_when_the_next_attempt_is_then_the_final_failure(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    start = clock.now
    make_subscription("declined", renews_at=start, amount=1500, currency="BHD")
    run_sweep(engine, faststar, smtp_settings, clock)
    [first] = mailbox.messages
    assert first["Subject"] == "Your 1.500 BHD payment to Example Merchant did not go through"
    assert "We will try again on 04 January 2026, 09:00 UTC" in plain_text(first)
    assert "card_declined" in plain_text(first)

    for day in (3, 5, 7):
        clock.now = start + timedelta(days=day)
        run_sweep(engine, faststar, smtp_settings, clock)
        run_sweep(engine, faststar, smtp_settings, clock)  # a second sweep sends nothing new
    subjects = [m["Subject"] for m in mailbox.messages]
    assert len(subjects) == 4
    assert subjects[-1].startswith("We could not collect")
    assert "has been canceled" in plain_text(mailbox.messages[-1])
    nexts = [
        line
        for m in mailbox.messages[:3]
        for line in plain_text(m).splitlines()
        if "try again" in line
    ]
    assert [n.split(" on ")[1][:15] for n in nexts] == [
        "04 January 2026",
        "06 January 2026",
        "08 January 2026",
    ]


def test_a_hard_decline_sends_only_the_final_failure(
    engine: Engine,
    faststar: FastStarClient,
    smtp_settings: Settings,
    clock: Clock,
    mailbox: Mailbox,
    make_subscription: Callable[..., int],
) -> None:
    make_subscription("expired", renews_at=clock.now)
    unpaid = smtp_settings.model_copy(update={"final_action": "unpaid"})
    run_sweep(engine, faststar, unpaid, clock)
    [message] = mailbox.messages
    assert message["Subject"].startswith("We could not collect")
    assert "expired_card" in plain_text(message)
    assert "now unpaid" in plain_text(message)
