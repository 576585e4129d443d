"""Headers written as they are (renewals.notifications.rendering's policy) must be exactly
what the standard SMTP policy's folding writes: every email kind, with plain and awkward
branding (non-ASCII, encoded-word look-alikes, double spaces, a very long name)."""

from __future__ import annotations

import email.policy
import io
from datetime import UTC, datetime
from email.generator import BytesGenerator, Generator
from email.message import EmailMessage

import pytest

from renewals.config import Settings
from renewals.notifications.examples import SAMPLES
from renewals.notifications.rendering import build_message, render

STANDARD = email.policy.SMTP.clone(max_line_length=998)
MERCHANTS = (
    "Example Merchant",
    "Café Zürich",
    "=?utf-8?q?x?= Shop",
    "Two  Spaces",
    "Long " * 250,
    "Tab\tShop",
)


def _written(message: EmailMessage, policy: email.policy.Policy) -> bytes:
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=policy).flatten(message)
    return buffer.getvalue()


def _written_text(message: EmailMessage, policy: email.policy.Policy) -> str:
    buffer = io.StringIO()
    Generator(buffer, policy=policy).flatten(message)
    return buffer.getvalue()


@pytest.mark.parametrize("merchant", MERCHANTS)
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_headers_written_as_they_are_match_the_standard_folding(kind: str, merchant: str) -> None:
    settings = Settings(merchant_name=merchant.strip(), support_email="help@example.com")
    message = build_message(
        render(kind, SAMPLES[kind], settings),
        recipient="Jane.Doe+bills@example.co.uk",
        dedupe_key=f"12:20261201T090000Z:{kind}:0",
        queued_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
        settings=settings,
    )
    assert message.as_bytes() == _written(message, STANDARD)
    assert message.as_string() == _written_text(message, STANDARD)
