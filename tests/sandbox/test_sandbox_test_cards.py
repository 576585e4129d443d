"""Each Part B test card's off-session behaviour, checked against the executed-charge log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox, running_sandbox
from renewals.sandbox.testing import envelope_data as data


def charge_body(
    payment_method_id: str, amount: int = 1999, currency: str = "usd"
) -> dict[str, Any]:
    return {
        "payment_method_id": payment_method_id,
        "amount": amount,
        "currency": currency,
        "off_session": True,
    }


def test_4242_succeeds_and_is_recorded_with_its_idempotency_key(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4242424242424242")
    payment = data(
        api.post(
            f"/public/customers/{customer_id}/charge",
            json=charge_body(card_id, 2500, "eur"),
            headers={"Idempotency-Key": "renewal-1"},
        )
    )
    assert payment["currency"] == "EUR"
    [executed] = sandbox.charges()
    assert executed == {
        "payment_intent_id": payment["payment_intent_id"],
        "customer_id": customer_id,
        "payment_method_id": card_id,
        "amount": 2500,
        "currency": "EUR",
        "status": "succeeded",
        "idempotency_key": "renewal-1",
        "created": executed["created"],
        "source": "off_session",
        "checkout_session_id": None,
    }


def test_any_other_valid_card_succeeds(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card("5555 5555 5555 4444")
    assert data(api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id)))
    [executed] = sandbox.charges()
    assert executed["idempotency_key"] is None


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
    ],
)
def test_declines_answer_400_naming_the_code_and_charge_nothing(
    sandbox: RunningSandbox, api: httpx.Client, number: str, code: str
) -> None:
    customer_id, card_id = sandbox.save_card(number)
    response = api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["success"] is False
    assert code in envelope["message"]
    assert sandbox.charges() == []


def test_0119_fails_with_500_and_charges_nothing(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4000000000000119")
    response = api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))
    assert response.status_code == 500
    assert response.json()["success"] is False
    assert sandbox.charges() == []


def test_3220_fails_with_500_after_the_charge_executed(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4000000000003220")
    response = api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))
    assert response.status_code == 500
    assert response.json()["success"] is False
    [executed] = sandbox.charges()
    assert (executed["payment_method_id"], executed["amount"]) == (card_id, 1999)


def test_0341_executes_then_drops_the_connection(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4000000000000341")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))
    [executed] = sandbox.charges()
    assert executed["payment_method_id"] == card_id
    # The server is fine afterwards and the client recovers on a fresh connection.
    assert data(api.get(f"/public/customers/{customer_id}"))["id"] == customer_id


def test_0341_drop_also_happens_with_the_h11_parser() -> None:
    with running_sandbox(http="h11") as sandbox, sandbox.api_client() as api:
        customer_id, card_id = sandbox.save_card("4000000000000341")
        with pytest.raises(httpx.RemoteProtocolError):
            api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))
        assert len(sandbox.charges()) == 1


def test_0341_drop_is_seen_by_an_async_client(sandbox: RunningSandbox) -> None:
    import asyncio

    customer_id, card_id = sandbox.save_card("4000000000000341")

    async def charge() -> None:
        async with httpx.AsyncClient(base_url=sandbox.base_url, headers=sandbox.headers) as api:
            await api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id))

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(charge())
    assert len(sandbox.charges()) == 1


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 19.99}, "amount"),
        ({"amount": "1999"}, "amount"),
        ({"currency": "US"}, "currency"),
        ({"currency": "US1"}, "currency"),
        ({"currency": None}, "currency"),
        ({"payment_method_id": None}, "payment_method_id"),
        ({"payment_method_id": "pm_missing"}, "pm_missing"),
        ({"off_session": "yes"}, "off_session"),
    ],
)
def test_charge_validation(
    sandbox: RunningSandbox, api: httpx.Client, change: dict[str, Any], needle: str
) -> None:
    customer_id, card_id = sandbox.save_card()
    body = charge_body(card_id) | change
    response = api.post(f"/public/customers/{customer_id}/charge", json=body)
    assert response.status_code == 400
    assert needle in response.json()["message"]
    assert sandbox.charges() == []


def test_charge_refuses_other_customers_and_detached_cards(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    jane, jane_card = sandbox.save_card(email="jane@example.com")
    john, _ = sandbox.save_card(email="john@example.com")
    assert (
        api.post(f"/public/customers/{john}/charge", json=charge_body(jane_card)).status_code == 400
    )
    assert (
        api.post("/public/customers/cus_missing/charge", json=charge_body(jane_card)).status_code
        == 404
    )
    data(api.delete(f"/public/payment-methods/{jane_card}"))
    detached = api.post(f"/public/customers/{jane}/charge", json=charge_body(jane_card))
    assert detached.status_code == 400
    assert "detached" in detached.json()["message"]
    assert sandbox.charges() == []


def test_3184_succeeds_through_checkout(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card("4000002760003184")
    assert (
        api.post(f"/public/customers/{customer_id}/charge", json=charge_body(card_id)).status_code
        == 402
    )
    session = data(
        api.post(
            "/public/checkout/sessions",
            json={
                "mode": "payment",
                "line_items": [{"ad_hoc_amount": 1999, "ad_hoc_currency": "USD", "quantity": 1}],
                "customer_id": customer_id,
            },
        )
    )
    completed = sandbox.complete_checkout(session["id"])
    [executed] = sandbox.charges()
    assert executed["source"] == "checkout"
    assert executed["payment_intent_id"] == completed["payment_intent_id"]
    assert executed["customer_id"] == customer_id
