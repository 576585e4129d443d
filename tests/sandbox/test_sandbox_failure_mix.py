"""The sandbox-wide failure mix (config ``mix_*``): cards that would succeed fail in the
configured proportions, reproducibly with a seed, and a same-key replay answers as before."""

from __future__ import annotations

import httpx
import pytest

from renewals.sandbox.testing import RunningSandbox, SandboxControlError


def outcome(api: httpx.Client, customer_id: str, card_id: str, key: str) -> str:
    body = {"payment_method_id": card_id, "amount": 1999, "currency": "usd"}
    try:
        response = api.post(
            f"/public/customers/{customer_id}/charge", json=body, headers={"Idempotency-Key": key}
        )
    except httpx.RemoteProtocolError:
        return "lost"
    return str(response.status_code)


@pytest.mark.parametrize(
    ("mix", "expected", "replayed", "charged"),
    [
        ("mix_decline", "400", "400", 0),
        ("mix_authentication", "402", "402", 0),
        # The lost response was a success: that is what the same key replays.
        ("mix_lost_response", "lost", "200", 1),
        ("mix_error_after_charge", "500", "500", 1),
    ],
)
def test_each_part_of_the_mix_on_a_card_that_would_succeed(
    sandbox: RunningSandbox, api: httpx.Client, mix: str, expected: str, replayed: str, charged: int
) -> None:
    customer_id, card_id = sandbox.save_card("4242424242424242")
    sandbox.configure(**{mix: 1.0})
    assert outcome(api, customer_id, card_id, "k1") == expected
    assert len(sandbox.charges()) == charged
    # The same key again: the first answer replayed, nothing executed a second time.
    assert outcome(api, customer_id, card_id, "k1") == replayed
    assert len(sandbox.charges()) == charged


def test_a_seed_replays_the_same_mix(sandbox: RunningSandbox, api: httpx.Client) -> None:
    customer_id, card_id = sandbox.save_card("4242424242424242")

    def run(prefix: str) -> list[str]:
        sandbox.configure(mix_decline=0.3, mix_authentication=0.3, mix_seed=7)
        return [outcome(api, customer_id, card_id, f"{prefix}-{n}") for n in range(40)]

    first = run("a")
    assert run("b") == first
    assert {"200", "400", "402"} <= set(first)


def test_fractions_must_add_up_to_at_most_one(sandbox: RunningSandbox) -> None:
    with pytest.raises(SandboxControlError, match="at most 1"):
        sandbox.configure(mix_decline=0.6, mix_lost_response=0.6)
    with pytest.raises(SandboxControlError, match="from 0 to 1"):
        sandbox.configure(mix_decline=2)
    assert sandbox.config()["mix_decline"] == 0.0
