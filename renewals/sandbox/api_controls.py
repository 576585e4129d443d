"""Sandbox-only test controls under ``/api/v1/sandbox/`` (all Part B, no API key needed).

Production code never calls these; tests and the ``renewals sandbox`` CLI helpers do.
"""

from __future__ import annotations

from renewals.sandbox.cards import validate_card
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import Reply, bad_request, not_found, ok
from renewals.sandbox.settings import merged
from renewals.sandbox.state import SandboxState
from renewals.sandbox.validation import require_int, require_str


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
