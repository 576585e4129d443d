"""Sandbox-only test controls under ``/api/v1/sandbox/`` (all Part B, no API key needed).

Production code never calls these; tests and the ``renewals sandbox`` CLI helpers do.
"""

from __future__ import annotations

from renewals.sandbox.cards import validate_card
from renewals.sandbox.ids import new_id
from renewals.sandbox.models import Dispute, Refund
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import Reply, bad_request, not_found, ok
from renewals.sandbox.settings import merged
from renewals.sandbox.state import SandboxState, now
from renewals.sandbox.validation import optional_int, optional_str, require_int, require_str

DISPUTE_STATUSES = ("needs_response", "under_review", "won", "lost")
CLOSED_DISPUTE_STATUSES = ("won", "lost")


def enter_card(state: SandboxState, request: ApiRequest, setup_intent_id: str) -> Reply:
    """Stands in for the buyer typing a card into FastStar's popup for a SetupIntent."""
    intent = state.setup_intents.get(setup_intent_id)
    if intent is None:
        raise not_found("setup intent", setup_intent_id)
    if intent.payment_method_id is not None:
        raise bad_request("The setup intent's card is already attached")
    card = validate_card(
        require_str(request.body, "number"),
        require_int(request.body, "exp_month"),
        require_int(request.body, "exp_year"),
    )
    intent.card_brand = card.brand
    intent.card_last4 = card.last4
    intent.card_exp_month = card.exp_month
    intent.card_exp_year = card.exp_year
    intent.card_behaviour = card.behaviour.value
    state.save("setup_intent", intent)
    return ok({"setup_intent_id": intent.id, "status": "succeeded"}, "Card saved")


def list_charges(state: SandboxState, request: ApiRequest) -> Reply:
    return ok(state.charges)


def list_events(state: SandboxState, request: ApiRequest) -> Reply:
    return ok([entry.public() for entry in state.webhooks.log])


def get_config(state: SandboxState, request: ApiRequest) -> Reply:
    return ok(state.config.to_json())


def update_config(state: SandboxState, request: ApiRequest) -> Reply:
    state.config = merged(state.config, request.body)
    if request.body.get("mix_seed") is not None:
        state.mix_random.seed(state.config.mix_seed)
    return ok(state.config.to_json(), "Config updated")


def reset(state: SandboxState, request: ApiRequest) -> Reply:
    state.reset()
    return ok(None, "Sandbox reset")


def refund_payment(state: SandboxState, request: ApiRequest, payment_id: str) -> Reply:
    """Stands in for the merchant refunding a payment in the dashboard: ``amount`` (default:
    all that is left) is refunded; emits ``refund.succeeded`` and ``payment.refunded``."""
    charge = state.charge_of(payment_id)
    refunded = sum(r.amount for r in state.refunds.values() if r.payment_id == payment_id)
    left = int(charge["amount"]) - refunded
    if left <= 0:
        raise bad_request(f"Payment {payment_id} is already fully refunded")
    amount = optional_int(request.body, "amount", minimum=1) or left
    if amount > left:
        raise bad_request(f"amount must be at most {left}, what is left of the payment")
    refund = Refund(new_id("re"), payment_id, amount, str(charge["currency"]), now())
    state.save("refund", refund)
    state.webhooks.emit(
        "refund.succeeded",
        {
            "refund_id": refund.id,
            "payment_id": payment_id,
            "amount": amount,
            "currency": refund.currency,
            "status": "succeeded",
        },
    )
    total = refunded + amount
    state.webhooks.emit(
        "payment.refunded",
        {
            "payment_id": payment_id,
            "amount": charge["amount"],
            "currency": charge["currency"],
            "status": "refunded" if total >= int(charge["amount"]) else "partially_refunded",
            "amount_refunded": total,
            "refund_id": refund.id,
            "customer_id": charge["customer_id"],
        },
    )
    return ok(refund.public(), "Payment refunded")


def dispute_payment(state: SandboxState, request: ApiRequest, payment_id: str) -> Reply:
    """Stands in for a cardholder disputing a payment, and for the dispute moving on: the
    first call opens it (``dispute.created``); later ones set ``status`` and emit
    ``dispute.updated``, or ``dispute.closed`` for ``won`` and ``lost``."""
    charge = state.charge_of(payment_id)
    status = optional_str(request.body, "status")
    if status is not None and status not in DISPUTE_STATUSES:
        raise bad_request(f"status must be one of {', '.join(DISPUTE_STATUSES)}")
    dispute = next((d for d in state.disputes.values() if d.payment_id == payment_id), None)
    if dispute is None:
        dispute = Dispute(
            id=new_id("dp"),
            payment_id=payment_id,
            amount=int(charge["amount"]),
            currency=str(charge["currency"]),
            reason=optional_str(request.body, "reason") or "fraudulent",
            status=status or "needs_response",
            created=now(),
        )
        event_type = "dispute.created"
    elif dispute.status in CLOSED_DISPUTE_STATUSES:
        raise bad_request(f"Dispute {dispute.id} is closed ({dispute.status})")
    else:
        dispute.status = status or "under_review"
        closed = dispute.status in CLOSED_DISPUTE_STATUSES
        event_type = "dispute.closed" if closed else "dispute.updated"
    state.save("dispute", dispute)
    state.webhooks.emit(
        event_type,
        {
            "dispute_id": dispute.id,
            "payment_id": payment_id,
            "amount": dispute.amount,
            "currency": dispute.currency,
            "status": dispute.status,
            "reason": dispute.reason,
        },
    )
    return ok(dispute.public(), "Dispute " + event_type.removeprefix("dispute."))
