"""Idempotency-Key replay and conflicts, the switch that ignores keys, latency, rate limit."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox
from renewals.sandbox.testing import envelope_data as data
from tests.support.waiting import wait_until


def charge_body(payment_method_id: str, amount: int = 1999) -> dict[str, Any]:
    return {
        "payment_method_id": payment_method_id,
        "amount": amount,
        "currency": "USD",
        "off_session": True,
    }


def test_same_key_same_request_replays_the_first_response(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card()
    url = f"/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "renewal-42"}
    first = api.post(url, json=charge_body(card_id), headers=key)
    # Same JSON with keys in another order is the same request.
    reordered = dict(reversed(list(charge_body(card_id).items())))
    second = api.post(url, json=reordered, headers=key)
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.charges()) == 1


def test_same_key_different_request_is_409(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card()
    url = f"/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "renewal-42"}
    data(api.post(url, json=charge_body(card_id, 1999), headers=key))
    conflict = api.post(url, json=charge_body(card_id, 2999), headers=key)
    assert conflict.status_code == 409
    assert conflict.json()["success"] is False
    other_path = api.post("/public/customers", json={"email": "x@example.com"}, headers=key)
    assert other_path.status_code == 409
    assert len(sandbox.charges()) == 1


def test_errors_are_replayed_too(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card("4000000000003220")
    url = f"/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "k"}
    first = api.post(url, json=charge_body(card_id), headers=key)
    again = api.post(url, json=charge_body(card_id), headers=key)
    assert first.status_code == again.status_code == 500
    assert len(sandbox.charges()) == 1


def test_retry_after_a_dropped_connection_replays_the_executed_success(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card("4000000000000341")
    url = f"/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "renewal-7"}
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(url, json=charge_body(card_id), headers=key)
    replayed = data(api.post(url, json=charge_body(card_id), headers=key))
    [executed] = sandbox.charges()
    assert replayed["payment_intent_id"] == executed["payment_intent_id"]
    assert replayed["status"] == "succeeded"


def test_second_request_while_the_first_is_in_flight_is_409(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card()
    # Long enough that the second request, sent as soon as the first is seen in flight,
    # arrives well inside the first one's latency even on a loaded machine.
    sandbox.configure(latency_ms=3000)
    url = f"{sandbox.base_url}/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "slow", **sandbox.headers}
    first: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: first.append(httpx.post(url, json=charge_body(card_id), headers=key))
    )
    slow.start()
    # Wait until the sandbox has marked the key in flight (the in-process app's store: no
    # API shows it), rather than sleeping and hoping the first request got there first.
    in_flight: set[str] = sandbox.app.state.idempotency._in_flight
    wait_until(lambda: "slow" in in_flight, interval=0.005, what="the first request in flight")
    concurrent = httpx.post(url, json=charge_body(card_id), headers=key)
    slow.join()
    assert concurrent.status_code == 409
    assert first[0].status_code == 200
    after = httpx.post(url, json=charge_body(card_id), headers=key)
    assert after.content == first[0].content
    assert len(sandbox.charges()) == 1


def test_switched_off_keys_are_ignored_but_logged(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    customer_id, card_id = sandbox.save_card()
    sandbox.configure(idempotency=False)
    url = f"/public/customers/{customer_id}/charge"
    key = {"Idempotency-Key": "renewal-42"}
    first = data(api.post(url, json=charge_body(card_id), headers=key))
    second = data(api.post(url, json=charge_body(card_id), headers=key))
    assert first["payment_intent_id"] != second["payment_intent_id"]
    assert [c["idempotency_key"] for c in sandbox.charges()] == ["renewal-42", "renewal-42"]


def test_latency_delays_api_requests(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.configure(latency_ms=200)
    started = time.monotonic()
    data(api.post("/public/customers", json={"email": "a@example.com"}))
    assert time.monotonic() - started >= 0.2


def test_rate_limit_answers_429_with_retry_after(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    sandbox.configure(rate_limit_per_s=2)
    # The burst is two requests; a third within half a second is refused. Keep asking until
    # one is, so a slow (loaded) client that lets a token refill does not fail the test.
    statuses: list[httpx.Response] = []
    for _ in range(50):
        statuses.append(api.get("/merchant/catalog/products"))
        if statuses[-1].status_code == 429:
            break
    limited = [r for r in statuses if r.status_code == 429]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json() == {"success": False, "message": "Too many requests", "data": None}
    time.sleep(0.6)  # one token refills at 2/s
    assert api.get("/merchant/catalog/products").status_code == 200
    # Sandbox controls are never limited.
    assert sandbox.charges() == []
    sandbox.configure(rate_limit_per_s=None)
    assert all(api.get("/merchant/catalog/products").status_code == 200 for _ in range(5))
