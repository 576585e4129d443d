"""The seed guide's curl sequence against the sandbox, with the documented shapes."""

from __future__ import annotations

import re

import httpx

from renewals.sandbox.testing import RunningSandbox
from renewals.sandbox.testing import envelope_data as data


def test_documented_sequence_gives_documented_shapes(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer = data(
        api.post("/public/customers", json={"email": "jane@example.com", "name": "Jane Buyer"})
    )
    assert set(customer) == {"id", "email", "name", "created"}
    assert customer["id"].startswith("cus_")
    assert (customer["email"], customer["name"]) == ("jane@example.com", "Jane Buyer")
    assert isinstance(customer["created"], int)

    intent = data(api.post(f"/public/customers/{customer['id']}/setup-intent"))
    assert set(intent) == {"client_secret", "publishable_key", "setup_intent_id"}
    assert intent["setup_intent_id"].startswith("seti_")
    assert re.fullmatch(r"seti_\w+_secret_\w+", intent["client_secret"])
    assert intent["client_secret"].startswith(intent["setup_intent_id"] + "_secret_")
    assert intent["publishable_key"].startswith("pk_test_")

    sandbox.add_card(intent["setup_intent_id"], "4242 4242 4242 4242", 12, 2030)
    card = data(
        api.post(
            f"/public/customers/{customer['id']}/payment-methods",
            json={"setup_intent_id": intent["setup_intent_id"]},
        )
    )
    assert set(card) == {"id", "brand", "last4", "exp_month", "exp_year"}
    assert card["id"].startswith("pm_")
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        12,
        2030,
    )

    payment = data(
        api.post(
            f"/public/customers/{customer['id']}/charge",
            json={
                "payment_method_id": card["id"],
                "amount": 1999,
                "currency": "USD",
                "off_session": True,
            },
        )
    )
    assert payment["payment_intent_id"].startswith("pi_")
    assert payment == {
        "payment_intent_id": payment["payment_intent_id"],
        "status": "succeeded",
        "amount": 1999,
        "currency": "USD",
        "payment_method_id": card["id"],
    }
    [executed] = sandbox.charges()
    assert executed["payment_intent_id"] == payment["payment_intent_id"]
    assert executed["source"] == "off_session"


def test_sca_card_answers_402_with_exactly_the_documented_body(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4000 0027 6000 3184")
    response = api.post(
        f"/public/customers/{customer_id}/charge",
        json={"payment_method_id": card_id, "amount": 1999, "currency": "USD", "off_session": True},
    )
    assert response.status_code == 402
    assert response.json() == {
        "success": False,
        "message": "Payment requires additional authentication",
    }
    assert sandbox.charges() == []


def test_api_key_is_required_and_must_be_a_test_key(sandbox: RunningSandbox) -> None:
    url = f"{sandbox.base_url}/public/customers"
    body = {"email": "jane@example.com"}
    for headers in ({}, {"X-API-Key": "sk_live_123"}, {"X-API-Key": "nonsense"}):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401
        envelope = response.json()
        assert envelope["success"] is False
        assert envelope["message"]
        assert envelope["data"] is None
    ok = httpx.post(url, json=body, headers={"X-API-Key": "sk_test_anything"})
    assert ok.status_code == 200


def test_sandbox_controls_and_health_need_no_key(sandbox: RunningSandbox) -> None:
    assert httpx.get(f"{sandbox.base_url}/sandbox/charges").json()["data"] == []
    health = httpx.get(f"{sandbox.root_url}/")
    assert health.status_code == 200
    assert health.json()["success"] is True


def test_customer_validation_and_lookup(api: httpx.Client) -> None:
    for body in ({}, {"email": ""}, {"email": "not-an-email"}, {"email": 42}):
        response = api.post("/public/customers", json=body)
        assert response.status_code == 400, body
        assert "email" in response.json()["message"]
    created = data(api.post("/public/customers", json={"email": "a@example.com"}))
    assert created["name"] is None
    assert data(api.get(f"/public/customers/{created['id']}")) == created
    missing = api.get("/public/customers/cus_missing")
    assert missing.status_code == 404
    assert missing.json()["success"] is False


def test_malformed_requests_get_envelopes(api: httpx.Client) -> None:
    not_json = api.post("/public/customers", content=b"{nope", headers={"Content-Type": "x"})
    assert not_json.status_code == 400
    assert not_json.json()["success"] is False
    array = api.post("/public/customers", json=[1, 2])
    assert array.status_code == 400
    unknown = api.get("/public/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["success"] is False
    wrong_method = api.delete("/public/customers")
    assert wrong_method.status_code == 405


def test_card_entry_validates_number_and_expiry(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer = data(api.post("/public/customers", json={"email": "jane@example.com"}))
    intent = data(api.post(f"/public/customers/{customer['id']}/setup-intent"))
    url = f"{sandbox.base_url}/sandbox/setup-intents/{intent['setup_intent_id']}/card"
    bad_cards = [
        {"number": "4242 4242 4242 4241", "exp_month": 12, "exp_year": 2030},  # Luhn
        {"number": "4242", "exp_month": 12, "exp_year": 2030},
        {"number": "4242424242424242", "exp_month": 13, "exp_year": 2030},
        {"number": "4242424242424242", "exp_month": 1, "exp_year": 2020},  # expired
        {"number": "4242424242424242", "exp_month": True, "exp_year": 2030},
        {"exp_month": 12, "exp_year": 2030},
    ]
    for card in bad_cards:
        response = httpx.post(url, json=card)
        assert response.status_code == 400, card
        assert response.json()["success"] is False
    assert (
        httpx.post(
            f"{sandbox.base_url}/sandbox/setup-intents/seti_missing/card",
            json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030},
        ).status_code
        == 404
    )
    entered = httpx.post(url, json={"number": "4242424242424242", "exp_month": 12, "exp_year": 30})
    assert data(entered) == {"setup_intent_id": intent["setup_intent_id"], "status": "succeeded"}


def test_attach_errors(sandbox: RunningSandbox, api: httpx.Client) -> None:
    jane = data(api.post("/public/customers", json={"email": "jane@example.com"}))
    john = data(api.post("/public/customers", json={"email": "john@example.com"}))
    intent = data(api.post(f"/public/customers/{jane['id']}/setup-intent"))
    attach = f"/public/customers/{jane['id']}/payment-methods"
    body = {"setup_intent_id": intent["setup_intent_id"]}

    no_card_yet = api.post(attach, json=body)
    assert no_card_yet.status_code == 400
    assert "no card" in no_card_yet.json()["message"]

    sandbox.add_card(intent["setup_intent_id"], "4242424242424242")
    other_customer = api.post(f"/public/customers/{john['id']}/payment-methods", json=body)
    assert other_customer.status_code == 400
    assert api.post("/public/customers/cus_missing/payment-methods", json=body).status_code == 404
    assert api.post(attach, json={"setup_intent_id": "seti_missing"}).status_code == 400
    assert api.post(attach, json={}).status_code == 400

    first = data(api.post(attach, json=body))
    assert data(api.post(attach, json=body)) == first  # a retried attach returns the same card


def test_list_default_and_detach(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, first = sandbox.save_card()
    intent = data(api.post(f"/public/customers/{customer_id}/setup-intent"))
    sandbox.add_card(intent["setup_intent_id"], "5555 5555 5555 4444", 1, 2031)
    second = data(
        api.post(
            f"/public/customers/{customer_id}/payment-methods",
            json={"setup_intent_id": intent["setup_intent_id"]},
        )
    )
    assert second["brand"] == "mastercard"

    listed = data(api.get(f"/public/customers/{customer_id}/payment-methods"))
    assert [(c["id"], c["is_default"], c["customer_id"]) for c in listed] == [
        (first, True, customer_id),
        (second["id"], False, customer_id),
    ]
    made_default = data(api.post(f"/public/payment-methods/{second['id']}/default"))
    assert made_default["id"] == second["id"]
    assert made_default["is_default"] is True
    listed = data(api.get(f"/public/customers/{customer_id}/payment-methods"))
    assert [c["is_default"] for c in listed] == [False, True]

    assert data(api.delete(f"/public/payment-methods/{first}")) == {"id": first, "detached": True}
    listed = data(api.get(f"/public/customers/{customer_id}/payment-methods"))
    assert [c["id"] for c in listed] == [second["id"]]
    assert api.delete(f"/public/payment-methods/{first}").status_code == 400
    assert api.delete("/public/payment-methods/pm_missing").status_code == 404
    assert api.get("/public/customers/cus_missing/payment-methods").status_code == 404
