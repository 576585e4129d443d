"""Rendering and building messages: amounts in each currency's minor units in every part,
branding from the settings, and headers that cannot be injected into."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from renewals.config import Settings
from renewals.notifications.examples import SAMPLES
from renewals.notifications.rendering import SUBJECTS, InvalidEmail, build_message, render

QUEUED_AT = datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=UTC)
BRANDED = Settings(
    merchant_name="Acme Tools", support_email="help@acme.example", mail_from="bills@acme.example"
)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1500, "JPY", "1,500 JPY"),  # no minor units
        (1500, "BHD", "1.500 BHD"),  # three
        (1999, "USD", "19.99 USD"),  # two
        (123456789, "USD", "1,234,567.89 USD"),
        (5, "BHD", "0.005 BHD"),
    ],
)
@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_every_email_shows_the_amount_in_the_currency_s_minor_units(
    kind: str, amount: int, currency: str, shown: str
) -> None:
    email = render(kind, {**SAMPLES[kind], "amount": amount, "currency": currency}, BRANDED)
    assert shown in email.subject
    assert shown in email.text
    assert shown in email.html


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_branding_comes_from_the_settings(kind: str) -> None:
    email = render(kind, SAMPLES[kind], BRANDED)
    assert "Acme Tools" in email.subject
    for part in (email.text, email.html):
        assert "Acme Tools" in part
        assert "help@acme.example" in part
        assert "Example Merchant" not in part


def test_the_message_carries_both_parts_and_headers_from_one_place() -> None:
    message = build_message(
        render("receipt", SAMPLES["receipt"], BRANDED),
        recipient="jane@example.com",
        dedupe_key="7:20261201T090000Z:receipt:0",
        queued_at=QUEUED_AT,
        settings=BRANDED,
    )
    assert message["From"] == "Acme Tools <bills@acme.example>"
    assert message["To"] == "jane@example.com"
    # The row's own: every send of it carries the same id (see delivery's crash window).
    assert (
        message["Message-ID"] == "<7.20261201T090000Z.receipt.0.20261124T090000123456@acme.example>"
    )
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


@pytest.mark.parametrize(
    ("recipient", "settings", "reason"),
    [
        ("jane@example.com\r\nBcc: all@example.com", BRANDED, "recipient contains a line break"),
        ("jane@example.com\nX-Evil: 1", BRANDED, "recipient contains a line break"),
        ("jane@example.com", BRANDED.model_copy(update={"merchant_name": "A\nBcc: x@y.z"}), ""),
        ("not-an-address", BRANDED, "recipient is not a valid address"),
        ("jane@localhost", BRANDED, "recipient is not a valid address"),
        ("@example.com", BRANDED, "recipient is not a valid address"),
        ("jane@example.com", BRANDED.model_copy(update={"mail_from": "nobody"}), "sender address"),
    ],
)
def test_bad_headers_and_addresses_are_refused_with_a_clear_reason(
    recipient: str, settings: Settings, reason: str
) -> None:
    with pytest.raises(InvalidEmail, match=reason or "line break") as caught:
        build_message(
            render("receipt", SAMPLES["receipt"], settings),
            recipient=recipient,
            dedupe_key="7:-:receipt:0",
            queued_at=QUEUED_AT,
            settings=settings,
        )
    assert "header injection refused" in str(caught.value) or "valid address" in str(caught.value)
