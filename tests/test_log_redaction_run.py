"""Logs at DEBUG across a full client run (our loggers, httpx, httpcore) carry no API key,
card number or email address."""

from __future__ import annotations

import io
import logging
import re

import pytest
import structlog

from renewals.config import load_settings
from renewals.faststar import FastStarClient, LineItem
from renewals.logs import configure_logging
from renewals.sandbox.testing import RunningSandbox

CARDS = ("4242424242424242", "4000002760003184", "4000000000000002", "4000000000000341")
EMAIL = "jane.buyer@example.com"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_debug_logs_of_a_full_client_run_leak_nothing(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    monkeypatch.setenv("RENEWALS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RENEWALS_LOG_FORMAT", log_format)
    monkeypatch.setenv("RENEWALS_FASTSTAR_API_KEY", sandbox.api_key)
    stream = io.StringIO()
    configure_logging(load_settings(), stream=stream)
    log = structlog.get_logger("test.run")
    try:
        with FastStarClient(sandbox.base_url, sandbox.api_key) as client:
            for n, number in enumerate(CARDS):
                customer = client.create_customer(email=EMAIL, name="Jane", idempotency_key=f"c{n}")
                intent = client.create_setup_intent(customer.id, idempotency_key=f"s{n}")
                log.debug("setup intent", intent=intent, client_secret=intent.client_secret)
                sandbox.add_card(intent.setup_intent_id, number)
                log.debug("card entered", number=number, email=EMAIL)
                card = client.attach_payment_method(
                    customer.id, intent.setup_intent_id, idempotency_key=f"a{n}"
                )
                outcome = client.charge_off_session(
                    customer.id, card.id, 1999, "USD", idempotency_key=f"k{n}"
                )
                log.debug("charged", outcome=outcome, customer=customer)
                client.list_payment_methods(customer.id)
            client.create_checkout_session(
                mode="payment",
                line_items=[LineItem(ad_hoc_amount=1999, ad_hoc_currency="USD")],
                success_url="https://example.com/ok",
                cancel_url="https://example.com/cancel",
                idempotency_key="cs",
            )
        logging.getLogger("httpx").debug("headers %s", {"X-API-Key": sandbox.api_key})
    finally:
        logging.getLogger().handlers.clear()

    out = stream.getvalue()
    assert "faststar.request" in out  # the run really logged, at DEBUG
    assert "HTTP Request" in out  # and so did httpx, through the same processors
    assert sandbox.api_key not in out
    assert re.search(r"sk_test_[A-Za-z0-9]{4,}", out) is None
    assert "secret_" not in out or re.search(r"secret_[A-Za-z0-9]", out) is None
    for number in CARDS:
        assert number not in out
    assert EMAIL not in out
    assert re.search(r"[A-Za-z0-9._%+-]+@example\.com", out) is None
