"""Contract tests: the real FastStarClient against the real sandbox over a loopback socket.

Every Part B test card and every charge outcome class, and every Part A endpoint. The
sandbox's executed-charge log (``sandbox.charges()``) is the ground truth: a charge is
reported ``Paid`` only if it is there, and ``Unknown`` exactly when it may be there.
The ``sandbox`` fixture (tests/conftest.py) resets the sandbox before each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from renewals.faststar import (
    AuthenticationRequired,
    Declined,
    FastStarClient,
    FastStarConfigurationError,
    FastStarNotSentError,
    FastStarRequestRejected,
    FastStarUnknownOutcomeError,
    LineItem,
    NotSent,
    Paid,
    Unknown,
)

pytestmark = pytest.mark.timeout(60)

SUCCEEDS = "4242424242424242"
AUTHENTICATION = "4000002760003184"
FAILS_BEFORE_CHARGE = "4000000000000119"
DROPS_AFTER_CHARGE = "4000000000000341"
FAILS_AFTER_CHARGE = "4000000000003220"


def key() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def fs(sandbox: Any) -> Iterator[FastStarClient]:
    with FastStarClient(sandbox.base_url, sandbox.api_key) as client:
        yield client


def save_card(fs: FastStarClient, sandbox: Any, number: str = SUCCEEDS) -> tuple[str, str]:
    """The seed guide's sequence through the client; the sandbox stands in for the popup."""
    customer = fs.create_customer(
        email="buyer@example.com", name="Sandbox Buyer", idempotency_key=key()
    )
    intent = fs.create_setup_intent(customer.id, idempotency_key=key())
    sandbox.add_card(intent.setup_intent_id, number)
    card = fs.attach_payment_method(customer.id, intent.setup_intent_id, idempotency_key=key())
    return customer.id, card.id


# --------------------------------------------------------------------------- test cards


def test_4242_is_paid_and_the_idempotency_key_reaches_the_sandbox(
    fs: FastStarClient, sandbox: Any
) -> None:
    customer_id, card_id = save_card(fs, sandbox)
    idempotency_key = key()
    outcome = fs.charge_off_session(
        customer_id, card_id, 1999, "USD", idempotency_key=idempotency_key
    )
    assert isinstance(outcome, Paid), outcome
    assert (outcome.amount, outcome.currency, outcome.payment_method_id) == (1999, "USD", card_id)
    (charge,) = sandbox.charges()
    assert charge["payment_intent_id"] == outcome.payment_intent_id
    assert charge["idempotency_key"] == idempotency_key
    assert (charge["amount"], charge["currency"], charge["customer_id"]) == (
        1999,
        "USD",
        customer_id,
    )


def test_3184_is_authentication_required_and_nothing_is_charged(
    fs: FastStarClient, sandbox: Any
) -> None:
    customer_id, card_id = save_card(fs, sandbox, AUTHENTICATION)
    outcome = fs.charge_off_session(customer_id, card_id, 500, "EUR", idempotency_key=key())
    assert outcome == AuthenticationRequired(
        message="Payment requires additional authentication", http_status=402
    )
    assert sandbox.charges() == []


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
    ],
)
def test_declines_carry_their_code(
    fs: FastStarClient, sandbox: Any, number: str, code: str
) -> None:
    customer_id, card_id = save_card(fs, sandbox, number)
    outcome = fs.charge_off_session(customer_id, card_id, 1000, "USD", idempotency_key=key())
    assert isinstance(outcome, Declined), outcome
    assert outcome.reason_code == code
    assert outcome.http_status == 400
    assert code in outcome.message
    assert sandbox.charges() == []


def test_0119_is_unknown_and_nothing_was_charged(fs: FastStarClient, sandbox: Any) -> None:
    customer_id, card_id = save_card(fs, sandbox, FAILS_BEFORE_CHARGE)
    outcome = fs.charge_off_session(customer_id, card_id, 1000, "USD", idempotency_key=key())
    # The client cannot know that nothing was charged: a 500 is always unknown.
    assert isinstance(outcome, Unknown), outcome
    assert outcome.http_status == 500
    assert sandbox.charges() == []


def test_0341_dropped_connection_after_charge_is_unknown_never_declined(
    fs: FastStarClient, sandbox: Any
) -> None:
    customer_id, card_id = save_card(fs, sandbox, DROPS_AFTER_CHARGE)
    outcome = fs.charge_off_session(customer_id, card_id, 1000, "USD", idempotency_key=key())
    assert isinstance(outcome, Unknown), outcome
    assert outcome.http_status is None
    assert "may have been sent" in outcome.reason
    assert len(sandbox.charges()) == 1  # it did execute: exactly why "unknown" is right


def test_3220_500_after_charge_is_unknown(fs: FastStarClient, sandbox: Any) -> None:
    customer_id, card_id = save_card(fs, sandbox, FAILS_AFTER_CHARGE)
    outcome = fs.charge_off_session(customer_id, card_id, 1000, "USD", idempotency_key=key())
    assert isinstance(outcome, Unknown), outcome
    assert outcome.http_status == 500
    assert len(sandbox.charges()) == 1


def test_charging_a_detached_card_is_declined_and_not_charged(
    fs: FastStarClient, sandbox: Any
) -> None:
    customer_id, card_id = save_card(fs, sandbox)
    fs.detach_payment_method(card_id)
    outcome = fs.charge_off_session(customer_id, card_id, 1000, "USD", idempotency_key=key())
    assert isinstance(outcome, Declined), outcome
    assert outcome.reason_code is None
    assert "detached" in outcome.message
    assert sandbox.charges() == []


# --------------------------------------------------------------------------- not sent / config


def test_unreachable_port_is_not_sent(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/api/v1"
    with FastStarClient(url, "sk_test_whatever") as client:
        outcome = client.charge_off_session("cus_1", "pm_1", 100, "USD", idempotency_key=key())
        assert isinstance(outcome, NotSent), outcome
        assert "ConnectError" in outcome.reason
        with pytest.raises(FastStarNotSentError, match="ConnectError"):
            client.list_products()


def test_rate_limited_charge_is_not_sent_with_retry_after(fs: FastStarClient, sandbox: Any) -> None:
    customer_id, card_id = save_card(fs, sandbox)
    sandbox.configure(rate_limit_per_s=0.5)  # burst of one, then one every 2 s
    outcomes = [
        fs.charge_off_session(customer_id, card_id, 100, "USD", idempotency_key=key())
        for _ in range(3)
    ]
    assert isinstance(outcomes[0], Paid), outcomes
    limited = [o for o in outcomes[1:] if isinstance(o, NotSent)]
    assert limited, outcomes
    for outcome in limited:
        assert outcome.http_status == 429
        assert outcome.retry_after is not None
        assert outcome.retry_after >= 1
    assert len(sandbox.charges()) == 1
    with pytest.raises(FastStarNotSentError) as excinfo:
        fs.list_products()
    assert excinfo.value.retry_after is not None


def test_wrong_key_stops_loudly_without_leaking_it(sandbox: Any) -> None:
    wrong = "live_key_that_must_not_leak"
    with FastStarClient(sandbox.base_url, wrong) as client:
        with pytest.raises(FastStarConfigurationError) as charge_error:
            client.charge_off_session("cus_1", "pm_1", 100, "USD", idempotency_key=key())
        with pytest.raises(FastStarConfigurationError) as list_error:
            client.list_payment_methods("cus_1")
    for error in (charge_error.value, list_error.value):
        assert error.status_code == 401
        assert wrong not in str(error)
        assert "HTTP 401" in str(error)
    assert sandbox.charges() == []


# --------------------------------------------------------------------------- idempotency


def test_same_key_replays_and_charges_once(fs: FastStarClient, sandbox: Any) -> None:
    customer_id, card_id = save_card(fs, sandbox)
    same = key()
    first = fs.charge_off_session(customer_id, card_id, 700, "USD", idempotency_key=same)
    second = fs.charge_off_session(customer_id, card_id, 700, "USD", idempotency_key=same)
    assert isinstance(first, Paid)
    assert second == first
    assert len(sandbox.charges()) == 1


def test_same_key_different_body_is_unknown(fs: FastStarClient, sandbox: Any) -> None:
    customer_id, card_id = save_card(fs, sandbox)
    same = key()
    assert isinstance(
        fs.charge_off_session(customer_id, card_id, 700, "USD", idempotency_key=same), Paid
    )
    conflict = fs.charge_off_session(customer_id, card_id, 800, "USD", idempotency_key=same)
    assert isinstance(conflict, Unknown), conflict
    assert conflict.http_status == 409
    assert len(sandbox.charges()) == 1


def test_dropped_response_is_replayed_as_paid_with_the_same_key(
    fs: FastStarClient, sandbox: Any
) -> None:
    """Why the key matters: the retry of an unknown 0341 charge learns it was paid."""
    customer_id, card_id = save_card(fs, sandbox, DROPS_AFTER_CHARGE)
    same = key()
    first = fs.charge_off_session(customer_id, card_id, 900, "USD", idempotency_key=same)
    assert isinstance(first, Unknown)
    # The sandbox replays the stored success (only the first delivery was dropped).
    second = fs.charge_off_session(customer_id, card_id, 900, "USD", idempotency_key=same)
    assert isinstance(second, Paid), second
    (charge,) = sandbox.charges()
    assert charge["payment_intent_id"] == second.payment_intent_id


# --------------------------------------------------------------------------- other endpoints


def test_customers_cards_default_and_detach(fs: FastStarClient, sandbox: Any) -> None:
    customer = fs.create_customer(email="jane@example.com", name="Jane", idempotency_key=key())
    assert customer.id.startswith("cus_")
    assert (customer.email, customer.name) == ("jane@example.com", "Jane")

    intent = fs.create_setup_intent(customer.id, idempotency_key=key())
    assert intent.setup_intent_id.startswith("seti_")
    assert intent.client_secret.startswith(f"{intent.setup_intent_id}_secret_")
    assert intent.publishable_key

    sandbox.add_card(intent.setup_intent_id, SUCCEEDS, exp_month=11, exp_year=2031)
    first = fs.attach_payment_method(customer.id, intent.setup_intent_id, idempotency_key=key())
    assert (first.brand, first.last4, first.exp_month, first.exp_year) == (
        "visa",
        "4242",
        11,
        2031,
    )

    second_intent = fs.create_setup_intent(customer.id, idempotency_key=key())
    sandbox.add_card(second_intent.setup_intent_id, "4000000000000002")
    second = fs.attach_payment_method(
        customer.id, second_intent.setup_intent_id, idempotency_key=key()
    )

    listed = {card.id: card for card in fs.list_payment_methods(customer.id)}
    assert set(listed) == {first.id, second.id}
    assert listed[first.id].is_default  # Part B: the first card becomes the default
    assert not listed[second.id].is_default
    assert listed[second.id].customer_id == customer.id

    fs.set_default_payment_method(second.id, idempotency_key=key())
    defaults = [c.id for c in fs.list_payment_methods(customer.id) if c.is_default]
    assert defaults == [second.id]

    fs.detach_payment_method(first.id)
    assert [c.id for c in fs.list_payment_methods(customer.id)] == [second.id]
    with pytest.raises(FastStarRequestRejected) as excinfo:
        fs.detach_payment_method(first.id)
    assert excinfo.value.status_code == 400
    assert "detached" in (excinfo.value.server_message or "")


def test_rejections_are_typed(fs: FastStarClient) -> None:
    with pytest.raises(FastStarRequestRejected) as excinfo:
        fs.list_payment_methods("cus_doesnotexist")
    assert excinfo.value.status_code == 404
    assert "GET /public/customers/cus_doesnotexist/payment-methods" in str(excinfo.value)
    with pytest.raises(FastStarRequestRejected) as bad_email:
        fs.create_customer(email="not-an-email", idempotency_key=key())
    assert bad_email.value.status_code == 400


def test_attach_without_a_card_is_rejected(fs: FastStarClient) -> None:
    customer = fs.create_customer(email="a@example.com", idempotency_key=key())
    intent = fs.create_setup_intent(customer.id, idempotency_key=key())
    with pytest.raises(FastStarRequestRejected, match="no card yet"):
        fs.attach_payment_method(customer.id, intent.setup_intent_id, idempotency_key=key())


def test_catalog_and_subscription_checkout(fs: FastStarClient, sandbox: Any) -> None:
    product = fs.create_product(
        name="Pro plan",
        description="Everything",
        metadata={"tier": "pro"},
        images=["https://img.example/pro.png"],
        idempotency_key=key(),
    )
    assert product.id.startswith("prod_")
    assert product.metadata == {"tier": "pro"}
    assert product.images == ("https://img.example/pro.png",)
    price = fs.create_price(
        product_id=product.id,
        currency="USD",
        unit_amount=1500,
        type="recurring",
        recurring_interval="month",
        idempotency_key=key(),
    )
    assert price.id.startswith("price_")
    assert (price.type, price.recurring_interval, price.unit_amount) == ("recurring", "month", 1500)
    one_time = fs.create_price(
        product_id=product.id, currency="USD", unit_amount=300, idempotency_key=key()
    )
    assert [p.id for p in fs.list_products()] == [product.id]
    assert [p.id for p in fs.list_prices()] == [price.id, one_time.id]

    session = fs.create_checkout_session(
        mode="subscription",
        line_items=[LineItem(price_id=price.id, quantity=2)],
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/cancel",
        presentation="iframe",
        buyer_country="US",
        idempotency_key=key(),
    )
    assert session.id.startswith("cs_")
    assert session.url
    assert (session.status, session.amount_subtotal, session.amount_total) == ("open", 3000, 3000)
    assert session.expires_at is not None

    sandbox.complete_checkout(session.id)
    done = fs.get_checkout_session(session.id)
    assert done.status == "complete"
    assert done.payment_intent_id is not None
    assert [c["payment_intent_id"] for c in sandbox.charges()] == [done.payment_intent_id]


def test_authentication_required_then_paid_on_session(fs: FastStarClient, sandbox: Any) -> None:
    """The documented 402 path: bring the customer back through a Checkout Session."""
    customer_id, card_id = save_card(fs, sandbox, AUTHENTICATION)
    outcome = fs.charge_off_session(customer_id, card_id, 1250, "EUR", idempotency_key=key())
    assert isinstance(outcome, AuthenticationRequired)
    session = fs.create_checkout_session(
        mode="payment",
        line_items=[LineItem(ad_hoc_amount=1250, ad_hoc_currency="EUR", description="Renewal")],
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/cancel",
        customer_id=customer_id,
        metadata={"renewal": "r-1"},
        idempotency_key=key(),
    )
    assert session.customer_id == customer_id
    assert session.metadata == {"renewal": "r-1"}
    assert (session.amount_total, session.currency) == (1250, "EUR")
    sandbox.complete_checkout(session.id)
    assert fs.get_checkout_session(session.id).status == "complete"
    (charge,) = sandbox.charges()
    assert (charge["amount"], charge["currency"]) == (1250, "EUR")


def test_missing_checkout_session_is_rejected(fs: FastStarClient) -> None:
    with pytest.raises(FastStarRequestRejected) as excinfo:
        fs.get_checkout_session("cs_nope")
    assert excinfo.value.status_code == 404


def test_retried_create_with_the_same_key_is_replayed(fs: FastStarClient) -> None:
    same = key()
    first = fs.create_customer(email="r@example.com", idempotency_key=same)
    again = fs.create_customer(email="r@example.com", idempotency_key=same)
    assert again.id == first.id
    with pytest.raises(FastStarUnknownOutcomeError, match="HTTP 409"):
        fs.create_customer(email="other@example.com", idempotency_key=same)
