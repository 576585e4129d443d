"""The live view of ``renewals run`` draws a frame only when what it shows has changed: an
idle demo prints nothing, on a terminal or on a pipe."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime

from renewals.cli.demo_view import CLEAR_SCREEN, LiveView, card_label, hide_password
from renewals.services.demo import Backlog, DemoRow

IDLE = Backlog(renewals=0, emails=0, webhooks=0)
ROW = DemoRow(
    subscription_id=2,
    email="demo-3184@example.com",
    last4="3184",
    sub_status="action_required",
    renewal_status="requires_action",
    next_action="follow up checkout",
    next_action_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    checkout_session_id="cs_1",
    action_email_key=None,
)


def test_a_terminal_is_redrawn_only_on_change() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True, title="TITLE")
    view.start()
    assert out.getvalue() == ""  # on a terminal the title is part of every frame
    assert view.show([ROW], IDLE)
    first = out.getvalue()
    assert first.startswith(CLEAR_SCREEN + "TITLE\n")
    assert "4000 0027 6000 3184  authentication required (402)" in first
    assert "follow up checkout 2026-12-01 09:00Z" in first

    assert not view.show([ROW], IDLE)
    assert out.getvalue() == first

    view.tell("#2 the customer pays on-session")
    assert view.show([ROW], IDLE)  # a new line of the story is a change
    assert view.show([replace(ROW, sub_status="active")], IDLE)
    assert out.getvalue().count(CLEAR_SCREEN) == 3


def test_a_pipe_gets_the_title_once_and_a_block_per_change() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False, title="TITLE")
    view.start()
    view.show([ROW], IDLE)
    view.show([ROW], IDLE)
    view.tell("#2 told once")
    view.show([ROW], Backlog(renewals=1, emails=0, webhooks=0))
    view.show([ROW], Backlog(renewals=1, emails=0, webhooks=0))
    text = out.getvalue()
    assert CLEAR_SCREEN not in text
    assert text.count("TITLE") == 1
    assert text.count("\n--- ") == 2
    assert text.count("#2 told once") == 1
    assert "in progress: 1 renewal(s) to charge" in text


def test_cards_and_urls_as_shown() -> None:
    assert card_label("4242") == "4242 4242 4242 4242  succeeds"
    assert card_label("1881") == "**** **** **** 1881"
    shown = hide_password("postgresql+psycopg://renewals:s3cret@db:5432/renewals")
    assert shown == "postgresql+psycopg://renewals:***@db:5432/renewals"
