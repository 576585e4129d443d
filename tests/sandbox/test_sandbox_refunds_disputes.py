"""The sandbox's refund and dispute controls (Part B): what they change, what they refuse,
and the events they emit through the sandbox's signed delivery."""

from __future__ import annotations

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox, SandboxControlError


def _payment(sandbox: RunningSandbox, api: httpx.Client, amount: int = 1999) -> str:
    customer_id, card_id = sandbox.save_card("4242424242424242")
    api.post(
        f"/public/customers/{customer_id}/charge",
        json={
            "payment_method_id": card_id,
            "amount": amount,
            "currency": "USD",
            "off_session": True,
        },
    )
    return str(sandbox.charges()[-1]["payment_intent_id"])


def _emitted(sandbox: RunningSandbox) -> list[tuple[str, dict[str, object]]]:
    return [(e["type"], e["data"]) for e in sandbox.events() if e["type"] != "payment.succeeded"]


def test_refunds_until_nothing_is_left(sandbox: RunningSandbox, api: httpx.Client) -> None:
    pi = _payment(sandbox, api)
    first = sandbox.refund(pi, amount=500)
    assert first["id"].startswith("re_") and first["amount"] == 500
    with pytest.raises(SandboxControlError, match="at most 1499"):
        sandbox.refund(pi, amount=1500)
    rest = sandbox.refund(pi)
    assert rest["amount"] == 1499
    with pytest.raises(SandboxControlError, match="already fully refunded"):
        sandbox.refund(pi)
    with pytest.raises(SandboxControlError, match="pi_nope"):
        sandbox.refund("pi_nope")

    refunded = [data for kind, data in _emitted(sandbox) if kind == "payment.refunded"]
    assert [(d["status"], d["amount_refunded"], d["amount"]) for d in refunded] == [
        ("partially_refunded", 500, 1999),
        ("refunded", 1999, 1999),
    ]
    succeeded = [data for kind, data in _emitted(sandbox) if kind == "refund.succeeded"]
    assert [(d["refund_id"], d["amount"]) for d in succeeded] == [
        (first["id"], 500),
        (rest["id"], 1499),
    ]


def test_documented_shape_keeps_the_four_payment_fields(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    sandbox.configure(webhook_documented_shape=True)
    pi = _payment(sandbox, api)
    sandbox.refund(pi)
    [refunded] = [data for kind, data in _emitted(sandbox) if kind == "payment.refunded"]
    assert refunded == {"payment_id": pi, "amount": 1999, "currency": "USD", "status": "refunded"}


def test_a_dispute_opens_moves_on_and_closes(sandbox: RunningSandbox, api: httpx.Client) -> None:
    pi = _payment(sandbox, api)
    opened = sandbox.dispute(pi)
    assert opened["id"].startswith("dp_") and opened["status"] == "needs_response"
    assert sandbox.dispute(pi)["status"] == "under_review"
    assert sandbox.dispute(pi, status="won")["status"] == "won"
    with pytest.raises(SandboxControlError, match="closed"):
        sandbox.dispute(pi, status="lost")
    with pytest.raises(SandboxControlError, match="status must be one of"):
        sandbox.dispute(_payment(sandbox, api, 500), status="maybe")
    assert [(kind, data["status"]) for kind, data in _emitted(sandbox)] == [
        ("dispute.created", "needs_response"),
        ("dispute.updated", "under_review"),
        ("dispute.closed", "won"),
    ]
    assert {data["dispute_id"] for _, data in _emitted(sandbox)} == {opened["id"]}
