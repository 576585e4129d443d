"""Customers, saved cards and off-session charges: the seed guide's endpoints (Part A).

Part B additions, ours: ``GET /public/customers/:id``; card listings carry ``is_default``
and ``customer_id``; the first attached card becomes the default; attaching an already
attached setup intent again returns the same card (so a retried attach is harmless).
"""

from __future__ import annotations

from renewals.sandbox.cards import DECLINES, ChargeBehaviour
from renewals.sandbox.ids import new_id, setup_intent_client_secret
from renewals.sandbox.models import Customer, PaymentMethod, SetupIntent
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import ApiError, Reply, bad_request, failure, not_found, ok
from renewals.sandbox.state import SandboxState, now
from renewals.sandbox.validation import (
    optional_bool,
    optional_str,
    require_currency,
    require_email,
    require_positive_amount,
    require_str,
)

PUBLISHABLE_KEY = "pk_test_sandbox"
AUTHENTICATION_REQUIRED = "Payment requires additional authentication"  # Part A, verbatim
_DECLINE_MESSAGES = {
    ChargeBehaviour.CARD_DECLINED: "Your card was declined (card_declined)",
    ChargeBehaviour.INSUFFICIENT_FUNDS: "Your card has insufficient funds (insufficient_funds)",
    ChargeBehaviour.EXPIRED_CARD: "Your card has expired (expired_card)",
}
_PROCESSING_ERROR = "An error occurred while processing the payment"


def create_customer(state: SandboxState, request: ApiRequest) -> Reply:
    customer = Customer(
        id=new_id("cus"),
        email=require_email(request.body, "email"),
        name=optional_str(request.body, "name"),
        created=now(),
    )
    state.save("customer", customer)
    return ok(customer.public(), "Customer created")


def get_customer(state: SandboxState, request: ApiRequest, customer_id: str) -> Reply:
    return ok(state.customer(customer_id).public())


def create_setup_intent(state: SandboxState, request: ApiRequest, customer_id: str) -> Reply:
    customer = state.customer(customer_id)
    setup_intent_id = new_id("seti")
    intent = SetupIntent(
        id=setup_intent_id,
        customer_id=customer.id,
        client_secret=setup_intent_client_secret(setup_intent_id),
        created=now(),
    )
    state.save("setup_intent", intent)
    return ok(
        {
            "client_secret": intent.client_secret,
            "publishable_key": PUBLISHABLE_KEY,
            "setup_intent_id": intent.id,
        },
        "SetupIntent created",
    )


def attach_payment_method(state: SandboxState, request: ApiRequest, customer_id: str) -> Reply:
    customer = state.customer(customer_id)
    setup_intent_id = require_str(request.body, "setup_intent_id")
    intent = state.setup_intents.get(setup_intent_id)
    if intent is None:
        raise bad_request(f"No such setup intent: {setup_intent_id}")
    if intent.customer_id != customer.id:
        raise bad_request("The setup intent belongs to another customer")
    if intent.payment_method_id is not None:
        return ok(state.payment_methods[intent.payment_method_id].masked(), "Card attached")
    if (
        intent.card_brand is None
        or intent.card_last4 is None
        or intent.card_exp_month is None
        or intent.card_exp_year is None
        or intent.card_behaviour is None
    ):
        raise bad_request("The setup intent has no card yet: the buyer has not saved one")
    card = PaymentMethod(
        id=new_id("pm"),
        customer_id=customer.id,
        brand=intent.card_brand,
        last4=intent.card_last4,
        exp_month=intent.card_exp_month,
        exp_year=intent.card_exp_year,
        behaviour=intent.card_behaviour,
        created=now(),
    )
    intent.payment_method_id = card.id
    state.save("payment_method", card)
    state.save("setup_intent", intent)
    if customer.default_payment_method_id is None:
        customer.default_payment_method_id = card.id
        state.save("customer", customer)
    return ok(card.masked(), "Card attached")


def list_payment_methods(state: SandboxState, request: ApiRequest, customer_id: str) -> Reply:
    customer = state.customer(customer_id)
    cards = [
        card.listed(card.id == customer.default_payment_method_id)
        for card in state.payment_methods.values()
        if card.customer_id == customer.id and not card.detached
    ]
    return ok(cards)


def _live_card(state: SandboxState, payment_method_id: str) -> PaymentMethod:
    card = state.payment_methods.get(payment_method_id)
    if card is None:
        raise not_found("payment method", payment_method_id)
    if card.detached:
        raise bad_request(f"Payment method {payment_method_id} is detached")
    return card


def set_default_payment_method(
    state: SandboxState, request: ApiRequest, payment_method_id: str
) -> Reply:
    card = _live_card(state, payment_method_id)
    customer = state.customers[card.customer_id]
    customer.default_payment_method_id = card.id
    state.save("customer", customer)
    return ok(card.listed(True), "Default payment method set")


def detach_payment_method(
    state: SandboxState, request: ApiRequest, payment_method_id: str
) -> Reply:
    card = _live_card(state, payment_method_id)
    card.detached = True
    state.save("payment_method", card)
    customer = state.customers[card.customer_id]
    if customer.default_payment_method_id == card.id:
        customer.default_payment_method_id = None
        state.save("customer", customer)
    return ok({"id": card.id, "detached": True}, "Payment method detached")


def charge(state: SandboxState, request: ApiRequest, customer_id: str) -> Reply:
    """Off-session charge; the saved card's test number decides the outcome (cards.py)."""
    customer = state.customer(customer_id)
    body = request.body
    payment_method_id = require_str(body, "payment_method_id")
    amount = require_positive_amount(body, "amount")
    currency = require_currency(body, "currency")
    optional_bool(body, "off_session")
    card = state.payment_methods.get(payment_method_id)
    if card is None:
        raise bad_request(f"No such payment method: {payment_method_id}")
    if card.customer_id != customer.id:
        raise bad_request("The payment method belongs to another customer")
    if card.detached:
        raise bad_request(f"Payment method {payment_method_id} is detached")

    behaviour = card.behaviour
    if behaviour == ChargeBehaviour.SUCCEEDS:
        behaviour = _mixed(state)
    if behaviour == ChargeBehaviour.FAILS_BEFORE_CHARGE:
        return failure(500, _PROCESSING_ERROR)
    if behaviour == ChargeBehaviour.AUTHENTICATION_REQUIRED or behaviour in DECLINES:
        _emit_failed(
            state,
            customer_id=customer_id,
            payment_method_id=card.id,
            amount=amount,
            currency=currency,
            behaviour=behaviour,
        )
        if behaviour == ChargeBehaviour.AUTHENTICATION_REQUIRED:
            # Exactly the documented body: no data key at all.
            return failure(402, AUTHENTICATION_REQUIRED, with_data=False)
        raise ApiError(400, _DECLINE_MESSAGES[ChargeBehaviour(behaviour)])

    executed = state.record_charge(
        customer_id=customer.id,
        payment_method_id=card.id,
        amount=amount,
        currency=currency,
        idempotency_key=request.idempotency_key,
        source="off_session",
    )
    if behaviour == ChargeBehaviour.FAILS_AFTER_CHARGE:
        return failure(500, _PROCESSING_ERROR)
    reply = ok(
        {
            "payment_intent_id": executed["payment_intent_id"],
            "status": "succeeded",
            "amount": amount,
            "currency": currency,
            "payment_method_id": card.id,
        },
        "Payment succeeded",
    )
    reply.drop_after_headers = behaviour == ChargeBehaviour.DROPS_AFTER_CHARGE
    return reply


def _mixed(state: SandboxState) -> ChargeBehaviour:
    """What the sandbox-wide failure mix makes of a charge that would succeed."""
    config = state.config
    roll = state.mix_random.random()
    for fraction, behaviour in (
        (config.mix_decline, ChargeBehaviour.CARD_DECLINED),
        (config.mix_authentication, ChargeBehaviour.AUTHENTICATION_REQUIRED),
        (config.mix_lost_response, ChargeBehaviour.DROPS_AFTER_CHARGE),
        (config.mix_error_after_charge, ChargeBehaviour.FAILS_AFTER_CHARGE),
    ):
        if roll < fraction:
            if behaviour == ChargeBehaviour.CARD_DECLINED and state.mix_random.random() < 0.5:
                return ChargeBehaviour.INSUFFICIENT_FUNDS
            return behaviour
        roll -= fraction
    return ChargeBehaviour.SUCCEEDS


def _emit_failed(
    state: SandboxState,
    *,
    customer_id: str,
    payment_method_id: str,
    amount: int,
    currency: str,
    behaviour: str,
) -> None:
    """``payment.failed`` for a decline or an authentication demand; nothing was charged."""
    needs_auth = behaviour == ChargeBehaviour.AUTHENTICATION_REQUIRED
    state.webhooks.emit(
        "payment.failed",
        {
            "payment_id": new_id("pi"),
            "amount": amount,
            "currency": currency,
            "status": "requires_action" if needs_auth else "failed",
            "failure_reason": "authentication_required" if needs_auth else behaviour,
            "customer_id": customer_id,
            "payment_method_id": payment_method_id,
        },
    )
