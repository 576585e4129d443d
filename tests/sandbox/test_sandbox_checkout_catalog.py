"""Checkout Sessions (create, get, complete, expire) and the catalog."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox
from renewals.sandbox.testing import envelope_data as data


def product_and_prices(api: httpx.Client) -> tuple[str, str, str]:
    product = data(
        api.post(
            "/merchant/catalog/products",
            json={"name": "Pro plan", "description": "All features", "metadata": {"tier": "pro"}},
        )
    )
    one_time = data(
        api.post(
            "/merchant/catalog/prices",
            json={"product_id": product["id"], "currency": "usd", "unit_amount": 500},
        )
    )
    monthly = data(
        api.post(
            "/merchant/catalog/prices",
            json={
                "product_id": product["id"],
                "currency": "usd",
                "unit_amount": 1999,
                "type": "recurring",
                "recurring_interval": "month",
                "trial_period_days": 7,
            },
        )
    )
    return product["id"], one_time["id"], monthly["id"]


def test_catalog_create_and_list(api: httpx.Client) -> None:
    product_id, one_time_id, monthly_id = product_and_prices(api)
    assert product_id.startswith("prod_")
    [product] = data(api.get("/merchant/catalog/products"))
    assert (product["id"], product["name"], product["metadata"]) == (
        product_id,
        "Pro plan",
        {"tier": "pro"},
    )
    prices = data(api.get("/merchant/catalog/prices"))
    assert [p["id"] for p in prices] == [one_time_id, monthly_id]
    assert prices[0]["type"] == "one_time"
    assert prices[0]["currency"] == "USD"
    assert prices[1]["recurring_interval"] == "month"
    assert prices[1]["recurring_interval_count"] == 1
    assert prices[1]["trial_period_days"] == 7


@pytest.mark.parametrize(
    "body",
    [
        {"currency": "usd", "unit_amount": 5},
        {"product_id": "prod_missing", "currency": "usd", "unit_amount": 5},
        {"product_id": "PRODUCT", "currency": "dollars", "unit_amount": 5},
        {"product_id": "PRODUCT", "currency": "usd", "unit_amount": -1},
        {"product_id": "PRODUCT", "currency": "usd", "unit_amount": 5, "type": "weekly"},
        {"product_id": "PRODUCT", "currency": "usd", "unit_amount": 5, "type": "recurring"},
        {"product_id": "PRODUCT", "currency": "usd", "unit_amount": 5, "recurring_interval": "day"},
    ],
)
def test_price_validation(api: httpx.Client, body: dict[str, Any]) -> None:
    product = data(api.post("/merchant/catalog/products", json={"name": "P"}))
    if body.get("product_id") == "PRODUCT":
        body = body | {"product_id": product["id"]}
    response = api.post("/merchant/catalog/prices", json=body)
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_product_needs_a_name(api: httpx.Client) -> None:
    assert api.post("/merchant/catalog/products", json={"description": "x"}).status_code == 400
    assert (
        api.post("/merchant/catalog/products", json={"name": "x", "images": "a"}).status_code == 400
    )


def test_checkout_session_lifecycle(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer = data(api.post("/public/customers", json={"email": "jane@example.com"}))
    _, one_time_id, _ = product_and_prices(api)
    session = data(
        api.post(
            "/public/checkout/sessions",
            json={
                "mode": "payment",
                "presentation": "iframe",
                "line_items": [
                    {"price_id": one_time_id, "quantity": 2},
                    {"ad_hoc_amount": 250, "ad_hoc_currency": "usd", "description": "setup fee"},
                ],
                "success_url": "https://merchant.example/ok",
                "cancel_url": "https://merchant.example/cancel",
                "buyer_country": "de",
                "customer_id": customer["id"],
                "metadata": {"subscription_id": "sub_1"},
            },
        )
    )
    assert session["id"].startswith("cs_")
    assert session["url"] == f"{sandbox.root_url}/checkout/{session['id']}"
    assert session["status"] == "open"
    assert (session["currency"], session["amount_subtotal"], session["amount_tax"]) == (
        "USD",
        1250,
        0,
    )
    assert session["amount_total"] == 1250
    assert session["expires_at"] == session["created"] + 24 * 3600
    assert session["payment_intent_id"] is None
    assert session["customer_id"] == customer["id"]
    assert session["metadata"] == {"subscription_id": "sub_1"}
    assert data(api.get(f"/public/checkout/sessions/{session['id']}")) == session
    page = httpx.get(session["url"])
    assert page.status_code == 200
    assert session["id"] in page.text

    completed = sandbox.complete_checkout(session["id"])
    assert completed["status"] == "complete"
    assert completed["payment_intent_id"].startswith("pi_")
    assert data(api.get(f"/public/checkout/sessions/{session['id']}")) == completed
    [executed] = sandbox.charges()
    assert executed == {
        "payment_intent_id": completed["payment_intent_id"],
        "customer_id": customer["id"],
        "payment_method_id": None,
        "amount": 1250,
        "currency": "USD",
        "status": "succeeded",
        "idempotency_key": None,
        "created": executed["created"],
        "source": "checkout",
        "checkout_session_id": session["id"],
    }
    [event] = sandbox.events()
    assert event["type"] == "payment.succeeded"
    assert event["data"]["checkout_session_id"] == session["id"]
    assert event["data"]["payment_id"] == completed["payment_intent_id"]

    again = httpx.post(f"{sandbox.base_url}/sandbox/checkout/sessions/{session['id']}/complete")
    assert again.status_code == 400
    assert len(sandbox.charges()) == 1


def test_expired_session_cannot_be_completed(sandbox: RunningSandbox, api: httpx.Client) -> None:
    session = data(
        api.post(
            "/public/checkout/sessions",
            json={
                "mode": "payment",
                "line_items": [{"ad_hoc_amount": 100, "ad_hoc_currency": "eur"}],
            },
        )
    )
    expired = sandbox.expire_checkout(session["id"])
    assert expired["status"] == "expired"
    assert data(api.get(f"/public/checkout/sessions/{session['id']}"))["status"] == "expired"
    response = httpx.post(f"{sandbox.base_url}/sandbox/checkout/sessions/{session['id']}/complete")
    assert response.status_code == 400
    assert "expired" in response.json()["message"]
    assert sandbox.charges() == []


def test_session_past_expires_at_reads_as_expired(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    session = data(
        api.post(
            "/public/checkout/sessions",
            json={
                "mode": "payment",
                "line_items": [{"ad_hoc_amount": 100, "ad_hoc_currency": "eur"}],
            },
        )
    )
    sandbox.app.state.checkout_sessions[session["id"]].expires_at = session["created"] - 1
    assert data(api.get(f"/public/checkout/sessions/{session['id']}"))["status"] == "expired"


def test_subscription_and_setup_modes(sandbox: RunningSandbox, api: httpx.Client) -> None:
    product_id, one_time_id, monthly_id = product_and_prices(api)
    subscription = data(
        api.post(
            "/public/checkout/sessions",
            json={"mode": "subscription", "line_items": [{"price_id": monthly_id}]},
        )
    )
    assert subscription["amount_total"] == 1999
    needs_recurring = api.post(
        "/public/checkout/sessions",
        json={"mode": "subscription", "line_items": [{"price_id": one_time_id}]},
    )
    assert needs_recurring.status_code == 400
    assert "recurring" in needs_recurring.json()["message"]
    by_product = data(
        api.post(
            "/public/checkout/sessions",
            json={"mode": "payment", "line_items": [{"product_id": product_id, "quantity": 3}]},
        )
    )
    assert by_product["amount_total"] == 3 * 1999  # the product's newest price
    setup = data(api.post("/public/checkout/sessions", json={"mode": "setup"}))
    assert (setup["amount_total"], setup["currency"]) == (0, None)
    completed = sandbox.complete_checkout(setup["id"])
    assert completed["payment_intent_id"] is None
    assert sandbox.charges() == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"line_items": [{"ad_hoc_amount": 1, "ad_hoc_currency": "usd"}]}, "mode"),
        ({"mode": "rent", "line_items": []}, "mode"),
        ({"mode": "payment", "line_items": []}, "line item"),
        (
            {"mode": "payment", "line_items": [{"ad_hoc_amount": 0, "ad_hoc_currency": "usd"}]},
            "ad_hoc_amount",
        ),
        (
            {"mode": "payment", "line_items": [{"ad_hoc_amount": True, "ad_hoc_currency": "usd"}]},
            "ad_hoc_amount",
        ),
        ({"mode": "payment", "line_items": [{"ad_hoc_amount": 5}]}, "ad_hoc_currency"),
        ({"mode": "payment", "line_items": [{"price_id": "price_missing"}]}, "price_missing"),
        ({"mode": "payment", "line_items": [{"product_id": "prod_missing"}]}, "prod_missing"),
        ({"mode": "payment", "line_items": [{}]}, "exactly one"),
        ({"mode": "payment", "line_items": "x"}, "line_items"),
        ({"mode": "payment", "presentation": "popup", "line_items": []}, "presentation"),
        (
            {"mode": "setup", "line_items": [{"ad_hoc_amount": 1, "ad_hoc_currency": "usd"}]},
            "setup",
        ),
        ({"mode": "setup", "customer_id": "cus_missing"}, "cus_missing"),
        ({"mode": "setup", "metadata": {"a": 1}}, "metadata"),
        (
            {
                "mode": "payment",
                "line_items": [
                    {"ad_hoc_amount": 1, "ad_hoc_currency": "usd"},
                    {"ad_hoc_amount": 1, "ad_hoc_currency": "eur"},
                ],
            },
            "currency",
        ),
    ],
)
def test_checkout_validation(api: httpx.Client, body: dict[str, Any], needle: str) -> None:
    response = api.post("/public/checkout/sessions", json=body)
    assert response.status_code == 400
    assert needle in response.json()["message"]


def test_merchant_of_record_rejects_ad_hoc_lines(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    _, one_time_id, _ = product_and_prices(api)
    sandbox.configure(merchant_of_record=True)
    ad_hoc = api.post(
        "/public/checkout/sessions",
        json={"mode": "payment", "line_items": [{"ad_hoc_amount": 100, "ad_hoc_currency": "usd"}]},
    )
    assert ad_hoc.status_code == 400
    assert "Merchant-of-Record" in ad_hoc.json()["message"]
    catalog = api.post(
        "/public/checkout/sessions",
        json={"mode": "payment", "line_items": [{"price_id": one_time_id}]},
    )
    assert catalog.status_code == 200


def test_unknown_session(sandbox: RunningSandbox, api: httpx.Client) -> None:
    assert api.get("/public/checkout/sessions/cs_missing").status_code == 404
    missing = httpx.post(f"{sandbox.base_url}/sandbox/checkout/sessions/cs_missing/complete")
    assert missing.status_code == 404
