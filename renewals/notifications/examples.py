"""Every email rendered once with sample data, for readers: ``docs/emails/``.

    python -m renewals.notifications.examples docs/emails

A test checks that the committed examples match what the templates render today.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from renewals.config import Settings
from renewals.notifications.rendering import SUBJECTS, RenderedEmail, render

_LINK = "https://cashier.faststarpay.com/checkout/cs_example"
_PERIOD = {"period_start": "2026-12-01T09:00:00+00:00", "period_end": "2027-01-01T09:00:00+00:00"}
_LINKED = {
    **_PERIOD,
    "checkout_url": _LINK,
    "checkout_expires_at": "2026-12-02T09:00:00+00:00",
    "final_action_at": "2026-12-08T09:00:00+00:00",
    "final_action": "canceled",
}
_CARD = {"card_brand": "visa", "card_last4": "4242"}

SAMPLES: dict[str, dict[str, Any]] = {
    "action_required": {"amount": 1999, "currency": "USD", **_LINKED},
    "action_reminder": {"amount": 1999, "currency": "USD", **_LINKED, "last_reminder": True},
    "receipt": {
        "amount": 1500,
        "currency": "JPY",
        **_PERIOD,
        **_CARD,
        "payment_intent_id": "pi_example",
    },
    "payment_failed": {
        "amount": 1500,
        "currency": "BHD",
        **_PERIOD,
        "reason": "Your card was declined (card_declined)",
        "next_attempt_at": "2026-12-04T09:00:00+00:00",
    },
    "final_failure": {
        "amount": 1999,
        "currency": "EUR",
        **_PERIOD,
        "final_action": "canceled",
        "reason": "Your card has expired (expired_card)",
    },
    "upcoming_renewal": {
        "amount": 1999,
        "currency": "USD",
        "renewal_at": "2026-12-01T09:00:00+00:00",
        **_CARD,
        "card_expiry": "12/2030",
    },
    "card_expiring": {
        "amount": 1999,
        "currency": "USD",
        "renewal_at": "2027-01-05T09:00:00+00:00",
        **_CARD,
        "card_expiry": "12/2026",
    },
}
LINK_KINDS = ("action_required", "action_reminder")


def render_examples() -> dict[str, RenderedEmail]:
    assert set(SAMPLES) == set(SUBJECTS), "every email kind needs a sample"
    # Fixed branding: the examples must not change with the environment they are built in.
    settings = Settings(merchant_name="Example Merchant", support_email="support@example.com")
    return {kind: render(kind, context, settings) for kind, context in SAMPLES.items()}


def write_examples(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, email in render_examples().items():
        for suffix, body in (
            ("html", email.html),
            ("txt", f"Subject: {email.subject}\n\n{email.text}"),
        ):
            path = directory / f"{kind}.{suffix}"
            path.write_text(body, encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/emails")):
        print(path)
