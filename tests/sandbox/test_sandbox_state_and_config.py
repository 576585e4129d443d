"""State file persistence across restarts, runtime config validation, reset, entry points."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from renewals.sandbox.client import SandboxCards, SandboxError, save_card
from renewals.sandbox.testing import RunningSandbox, running_sandbox
from renewals.sandbox.testing import envelope_data as data


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.sqlite3"
    charge_body = {"amount": 1999, "currency": "USD", "off_session": True}
    with running_sandbox(state_path=state) as first, first.api_client() as api:
        customer_id, card_id = first.save_card()
        url = f"/public/customers/{customer_id}/charge"
        key = {"Idempotency-Key": "renewal-1"}
        paid = api.post(url, json=charge_body | {"payment_method_id": card_id}, headers=key)
        product = data(api.post("/merchant/catalog/products", json={"name": "Pro"}))
        price = data(
            api.post(
                "/merchant/catalog/prices",
                json={"product_id": product["id"], "currency": "usd", "unit_amount": 100},
            )
        )
        session = data(
            api.post(
                "/public/checkout/sessions",
                json={"mode": "payment", "line_items": [{"price_id": price["id"]}]},
            )
        )
        intent = data(api.post(f"/public/customers/{customer_id}/setup-intent"))
        first.add_card(intent["setup_intent_id"], "5555555555554444")
        charges_before, events_before = first.charges(), first.events()

    with running_sandbox(state_path=state) as second, second.api_client() as api:
        assert second.charges() == charges_before
        assert [e["id"] for e in second.events()] == [e["id"] for e in events_before]
        assert data(api.get(f"/public/customers/{customer_id}"))["id"] == customer_id
        [card] = data(api.get(f"/public/customers/{customer_id}/payment-methods"))
        assert (card["id"], card["is_default"]) == (card_id, True)
        # The idempotency record survived: a retry after the restart replays, no new charge.
        replay = api.post(url, json=charge_body | {"payment_method_id": card_id}, headers=key)
        assert replay.content == paid.content
        assert len(second.charges()) == 1
        assert data(api.get("/merchant/catalog/prices"))[0]["id"] == price["id"]
        assert data(api.get(f"/public/checkout/sessions/{session['id']}")) == session
        # The card entered before the restart can still be attached.
        attached = data(
            api.post(
                f"/public/customers/{customer_id}/payment-methods",
                json={"setup_intent_id": intent["setup_intent_id"]},
            )
        )
        assert attached["last4"] == "4444"
        second.complete_checkout(session["id"])
        assert len(second.charges()) == 2

    with running_sandbox(state_path=state) as third:
        assert len(third.charges()) == 2
        third.reset()
    with running_sandbox(state_path=state) as fourth:
        assert fourth.charges() == []


def test_config_read_and_merge(sandbox: RunningSandbox) -> None:
    defaults = sandbox.config()
    assert defaults["latency_ms"] == 0
    assert defaults["rate_limit_per_s"] is None
    assert defaults["idempotency"] is True
    assert defaults["webhook_url"] is None
    assert defaults["webhook_max_attempts"] == 5
    assert defaults["webhook_duplicates"] is defaults["webhook_reorder"] is False
    assert defaults["merchant_of_record"] is False
    assert defaults["webhook_documented_shape"] is False  # events carry the sandbox's extras
    assert isinstance(defaults["webhook_secret"], str)

    sandbox.configure(latency_ms=5, webhook_url="http://127.0.0.1:9/hook")
    merged = sandbox.config()
    assert (merged["latency_ms"], merged["webhook_url"]) == (5, "http://127.0.0.1:9/hook")
    assert merged["idempotency"] is True  # untouched keys keep their values
    sandbox.reset()
    assert sandbox.config() == defaults


@pytest.mark.parametrize(
    "update",
    [
        {"latency": 5},
        {"latency_ms": "5"},
        {"latency_ms": -1},
        {"latency_ms": True},
        {"rate_limit_per_s": 0},
        {"idempotency": "false"},
        {"idempotency": 0},
        {"webhook_url": "ftp://x"},
        {"webhook_url": 5},
        {"webhook_secret": ""},
        {"webhook_max_attempts": 0},
        {"webhook_max_attempts": 2.5},
        {"webhook_duplicates": None},
        {"merchant_of_record": "yes"},
        {"webhook_documented_shape": 1},
        {"latency_ms": 10, "nonsense": 1},
    ],
)
def test_config_rejects_unknown_keys_and_wrong_types(
    sandbox: RunningSandbox, update: dict[str, Any]
) -> None:
    response = httpx.post(f"{sandbox.base_url}/sandbox/config", json=update)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert sandbox.config()["latency_ms"] == 0  # nothing of a rejected update is applied


def test_reset_clears_everything(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card()
    data(
        api.post(
            f"/public/customers/{customer_id}/charge",
            json={"payment_method_id": card_id, "amount": 5, "currency": "USD"},
            headers={"Idempotency-Key": "k"},
        )
    )
    sandbox.reset()
    assert sandbox.charges() == []
    assert sandbox.events() == []
    assert api.get(f"/public/customers/{customer_id}").status_code == 404
    # The idempotency key is forgotten too: it now goes with a different request freely.
    assert (
        api.post(
            "/public/customers", json={"email": "a@b.co"}, headers={"Idempotency-Key": "k"}
        ).status_code
        == 200
    )


def test_cli_card_helper(sandbox: RunningSandbox) -> None:
    customer_id, card_id = save_card(
        sandbox.base_url,
        sandbox.api_key,
        email="jane@example.com",
        name="Jane",
        number="4242 4242 4242 4242",
    )
    assert customer_id.startswith("cus_")
    assert card_id.startswith("pm_")
    with pytest.raises(SandboxError, match="Luhn"):
        SandboxCards(sandbox.base_url, sandbox.api_key).save_card(
            email="jane@example.com", name="Jane", number="4242 4242 4242 4241"
        )
    with pytest.raises(SandboxError, match="API key"):
        save_card(
            sandbox.base_url, "pk_wrong", email="j@example.com", name="J", number="4242424242424242"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_python_dash_m_serves_the_sandbox(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "renewals.sandbox",
            "--port",
            str(port),
            "--state",
            str(tmp_path / "s.db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # a cold interpreter start on a loaded machine
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.05)
        assert response.json()["success"] is True
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/public/customers",
            json={"email": "jane@example.com"},
            headers={"X-API-Key": "sk_test_x"},
        )
        assert created.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (tmp_path / "s.db").exists()
