"""Checkout Sessions, the on-session path (fields from Part A).

Part B, ours: id prefix ``cs_``; ``status`` open -> complete | expired; ``expires_at`` 24 h
after creation; ``url`` on the sandbox host (``/checkout/cs_...``, a small HTML page);
optional ``customer_id`` and ``metadata`` echoed back; tax is always 0; a ``product_id``
line uses the product's newest active price; the sandbox-only ``complete`` and ``expire``
endpoints stand in for the buyer paying and for time passing.
"""

from __future__ import annotations

import html
from typing import Any

from renewals.sandbox.ids import new_id
from renewals.sandbox.models import CheckoutSession, Price
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import JSON, ApiError, Reply, bad_request, not_found, ok
from renewals.sandbox.state import SandboxState, now
from renewals.sandbox.validation import (
    optional_int,
    optional_str,
    optional_str_dict,
    require_choice,
    require_currency,
    require_positive_amount,
)

SESSION_LIFETIME_S = 24 * 3600
MODES = ("payment", "subscription", "setup")
PRESENTATIONS = ("iframe", "link")


def create_session(state: SandboxState, request: ApiRequest) -> Reply:
    body = request.body
    mode = require_choice(body, "mode", MODES, default=None)
    presentation = require_choice(body, "presentation", PRESENTATIONS, default="link")
    customer_id = optional_str(body, "customer_id")
    if customer_id is not None and customer_id not in state.customers:
        raise bad_request(f"No such customer: {customer_id}")
    buyer_country = optional_str(body, "buyer_country")
    if buyer_country is not None and not (len(buyer_country) == 2 and buyer_country.isalpha()):
        raise bad_request("buyer_country must be a two-letter country code")

    raw_items: Any = body.get("line_items", [])
    if not isinstance(raw_items, list) or not all(isinstance(i, dict) for i in raw_items):
        raise bad_request("line_items must be a list of objects")
    items = [_line_item(state, item, index) for index, item in enumerate(raw_items)]
    if mode == "setup" and items:
        raise bad_request("mode setup saves a card without charging: it takes no line_items")
    if mode != "setup" and not items:
        raise bad_request(f"mode {mode} needs at least one line item")
    if mode == "subscription" and not any(i["recurring"] for i in items):
        raise bad_request("mode subscription needs a line item with a recurring price_id")
    currencies = {i["currency"] for i in items}
    if len(currencies) > 1:
        raise bad_request("all line items must share one currency")

    subtotal = sum(i["amount_total"] for i in items)
    created = now()
    session_id = new_id("cs")
    session = CheckoutSession(
        id=session_id,
        url=f"http://{request.host}/checkout/{session_id}",
        mode=mode,
        presentation=presentation,
        line_items=items,
        success_url=optional_str(body, "success_url"),
        cancel_url=optional_str(body, "cancel_url"),
        buyer_country=buyer_country.upper() if buyer_country else None,
        currency=currencies.pop() if currencies else None,
        amount_subtotal=subtotal,
        amount_tax=0,
        amount_total=subtotal,
        created=created,
        expires_at=created + SESSION_LIFETIME_S,
        customer_id=customer_id,
        metadata=optional_str_dict(body, "metadata"),
    )
    state.save("checkout_session", session)
    return ok(session.public(created), "Checkout session created")


def _line_item(state: SandboxState, item: JSON, index: int) -> JSON:
    """A validated line item with its unit amount and currency resolved."""
    where = f"line_items[{index}]"
    quantity = optional_int(item, "quantity", minimum=1) or 1
    description = optional_str(item, "description")
    price_id, product_id = optional_str(item, "price_id"), optional_str(item, "product_id")
    ad_hoc = "ad_hoc_amount" in item or "ad_hoc_currency" in item
    if [price_id is not None, product_id is not None, ad_hoc].count(True) != 1:
        raise bad_request(f"{where} needs exactly one of price_id, product_id or ad_hoc_amount")
    if ad_hoc:
        if state.config.merchant_of_record:
            raise bad_request(
                f"{where}: Merchant-of-Record merchants must reference a catalog "
                "price_id or product_id in every line item"
            )
        try:
            unit_amount = require_positive_amount(item, "ad_hoc_amount")
            currency = require_currency(item, "ad_hoc_currency")
        except ApiError as error:
            raise bad_request(f"{where}: {error.message}") from None
        price = None
    else:
        price = _catalog_price(state, where, price_id, product_id)
        unit_amount, currency, product_id = price.unit_amount, price.currency, price.product_id
    return {
        "price_id": price.id if price else None,
        "product_id": product_id,
        "description": description,
        "quantity": quantity,
        "unit_amount": unit_amount,
        "currency": currency,
        "amount_total": unit_amount * quantity,
        "recurring": price is not None and price.type == "recurring",
    }


def _catalog_price(
    state: SandboxState, where: str, price_id: str | None, product_id: str | None
) -> Price:
    """The price a catalog line item charges: its price_id, or its product's newest price."""
    if price_id is not None:
        price = state.prices.get(price_id)
        if price is None or not price.active:
            raise bad_request(f"{where}: no such price: {price_id}")
        return price
    if product_id not in state.products:
        raise bad_request(f"{where}: no such product: {product_id}")
    candidates = [p for p in state.prices.values() if p.product_id == product_id and p.active]
    if not candidates:
        raise bad_request(f"{where}: product {product_id} has no active price")
    return candidates[-1]


def _session(state: SandboxState, session_id: str) -> CheckoutSession:
    session = state.checkout_sessions.get(session_id)
    if session is None:
        raise not_found("checkout session", session_id)
    return session


def get_session(state: SandboxState, request: ApiRequest, session_id: str) -> Reply:
    return ok(_session(state, session_id).public(now()))


def complete_session(state: SandboxState, request: ApiRequest, session_id: str) -> Reply:
    """Sandbox control: the buyer pays on the hosted page and 3-D Secure passes."""
    session = _session(state, session_id)
    current = session.current_status(now())
    if current != "open":
        raise bad_request(f"Checkout session is {current}, it cannot be completed")
    if session.mode != "setup" and session.currency is not None:
        charge = state.record_charge(
            customer_id=session.customer_id,
            payment_method_id=None,
            amount=session.amount_total,
            currency=session.currency,
            idempotency_key=None,
            source="checkout",
            checkout_session_id=session.id,
        )
        session.payment_intent_id = charge["payment_intent_id"]
    session.status = "complete"
    state.save("checkout_session", session)
    return ok(session.public(now()), "Checkout session completed")


def expire_session(state: SandboxState, request: ApiRequest, session_id: str) -> Reply:
    """Sandbox control: the session runs out without a payment."""
    session = _session(state, session_id)
    if session.status == "complete":
        raise bad_request("Checkout session is complete, it cannot expire")
    session.status = "expired"
    state.save("checkout_session", session)
    return ok(session.public(now()), "Checkout session expired")


def checkout_page(state: SandboxState, session_id: str) -> tuple[int, str]:
    """The hosted checkout page the session ``url`` points to (status code, HTML)."""
    session = state.checkout_sessions.get(session_id)
    if session is None:
        return 404, "<!doctype html><title>Not found</title><p>No such checkout session.</p>"
    amount = f"{session.amount_total} {session.currency or ''}".strip()
    status = session.current_status(now())
    return 200, (
        "<!doctype html><meta charset=utf-8><title>FastStar sandbox checkout</title>"
        f"<h1>Checkout {html.escape(session.id)}</h1>"
        f"<p>Mode: {html.escape(session.mode)}. Amount: {html.escape(amount)} (minor units)."
        f" Status: <strong>{html.escape(status)}</strong>.</p>"
        "<p>This sandbox page takes no card: tests complete it with "
        f"<code>POST /api/v1/sandbox/checkout/sessions/{html.escape(session.id)}/complete</code>."
        "</p>"
    )
