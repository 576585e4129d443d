"""Property tests: the charge classifier never raises (except the two documented
configuration cases) and answers Paid only for the exact documented success shape."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renewals.faststar import (
    AuthenticationRequired,
    Declined,
    FastStarConfigurationError,
    NotSent,
    Paid,
    Unknown,
    classify_charge_response,
)
from tests.faststar.fakes import AMOUNT, CARD, CURRENCY, CUSTOMER, client

OUTCOMES = (Paid, AuthenticationRequired, Declined, NotSent, Unknown)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

# Values worth trying in each field of the documented success body.
field_variants: dict[str, Any] = {
    "payment_intent_id": st.sampled_from(["pi_abc", "pi_", "ch_1", "PI_1", "pi_a b", "", None, 7])
    | st.text(max_size=8),
    "status": st.sampled_from(
        ["succeeded", "failed", "requires_action", "processing", "Succeeded", "", None]
    ),
    "amount": st.sampled_from([AMOUNT, AMOUNT + 1, -AMOUNT, 0, str(AMOUNT), float(AMOUNT), True])
    | st.integers(),
    "currency": st.sampled_from([CURRENCY, "usd", "EUR", "", None, 840]),
    "payment_method_id": st.sampled_from([CARD, "pm_other", None, ""]),
}


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> Any:
    data: dict[str, Any] = {
        "payment_intent_id": "pi_abc",
        "status": "succeeded",
        "amount": AMOUNT,
        "currency": CURRENCY,
        "payment_method_id": CARD,
    }
    for key, strategy in field_variants.items():
        choice = draw(st.sampled_from(["keep", "change", "drop"]))
        if choice == "change":
            data[key] = draw(strategy)
        elif choice == "drop":
            del data[key]
    body: dict[str, Any] = {"message": draw(st.text(max_size=30))}
    body["success"] = draw(st.sampled_from([True, True, False, "true", 1, None]))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        pass  # no data at all
    elif shape == 1:
        body["data"] = draw(json_values)
    else:
        body["data"] = data
    return body


bodies = st.one_of(
    near_valid_bodies().map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=64),
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 400, 402, 404, 409, 429, 500]), st.integers(100, 599)
)
header_sets = st.dictionaries(
    st.sampled_from(["retry-after", "content-type"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    max_size=2,
)


def is_documented_success(status: int, content: bytes) -> bool:
    """The oracle, written independently of the classifier."""
    if not 200 <= status < 300:
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("success") is not True:
        return False
    data = body.get("data")
    if not isinstance(data, dict) or data.get("status") != "succeeded":
        return False
    pi = data.get("payment_intent_id")
    currency = data.get("currency")
    return (
        isinstance(pi, str)
        and re.fullmatch(r"pi_[A-Za-z0-9_]+", pi) is not None
        and type(data.get("amount")) is int
        and data["amount"] == AMOUNT
        and isinstance(currency, str)
        and currency.upper() == CURRENCY
        and data.get("payment_method_id") == CARD
    )


def may_raise_configuration(status: int, content: bytes) -> bool:
    if status in (401, 403):
        return True
    if status != 404:
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return True
    return not (isinstance(body, dict) and isinstance(body.get("success"), bool))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, content=bodies, headers=header_sets)
def test_classifier_is_total_and_paid_only_for_the_documented_shape(
    status: int, content: bytes, headers: dict[str, str]
) -> None:
    try:
        outcome = classify_charge_response(
            status,
            httpx.Headers(headers),
            content,
            amount=AMOUNT,
            currency=CURRENCY,
            payment_method_id=CARD,
        )
    except FastStarConfigurationError:
        assert may_raise_configuration(status, content)
        return
    assert isinstance(outcome, OUTCOMES)
    assert isinstance(outcome, Paid) == is_documented_success(status, content)
    if isinstance(outcome, Paid):
        assert outcome.amount == AMOUNT
        assert outcome.payment_method_id == CARD
        assert outcome.payment_intent_id.startswith("pi_")
    if status == 402:
        assert isinstance(outcome, AuthenticationRequired)
    if 500 <= status < 600 or status in (408, 409):
        assert isinstance(outcome, Unknown)
    if status == 429:
        assert isinstance(outcome, NotSent)
        assert outcome.retry_after is None or outcome.retry_after >= 0


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, content=bodies)
def test_client_never_crashes_on_any_response(status: int, content: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    with client(handler) as c:
        try:
            outcome = c.charge_off_session(CUSTOMER, CARD, AMOUNT, CURRENCY, idempotency_key="k")
        except FastStarConfigurationError:
            assert may_raise_configuration(status, content)
            return
    assert isinstance(outcome, OUTCOMES)
    assert isinstance(outcome, Paid) == is_documented_success(status, content)
