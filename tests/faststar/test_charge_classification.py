"""A broken FastStar server, played with httpx.MockTransport, against charge_off_session.

Every response is classified (never a crash, never Paid unless it is the documented
success) and the reason says what was wrong.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx
import pytest

from renewals.faststar import (
    AuthenticationRequired,
    Declined,
    FastStarConfigurationError,
    NotSent,
    Paid,
    Unknown,
)
from tests.faststar.fakes import (
    AMOUNT,
    API_KEY,
    CARD,
    CURRENCY,
    CUSTOMER,
    charge,
    client,
    envelope,
    paid_data,
    raise_,
    respond,
)

HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def test_documented_success_is_paid() -> None:
    outcome = charge(respond(200, envelope(paid_data())))
    assert outcome == Paid(
        payment_intent_id="pi_123abc", amount=AMOUNT, currency=CURRENCY, payment_method_id=CARD
    )


def test_request_carries_documented_fields_key_and_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope(paid_data()))

    with client(handler) as c:
        c.charge_off_session(CUSTOMER, CARD, AMOUNT, CURRENCY, idempotency_key="renewal-7-1")
    (request,) = seen
    assert request.method == "POST"
    assert request.url == f"https://api.faststar.test/api/v1/public/customers/{CUSTOMER}/charge"
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Idempotency-Key"] == "renewal-7-1"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "payment_method_id": CARD,
        "amount": AMOUNT,
        "currency": CURRENCY,
        "off_session": True,
    }


@pytest.mark.parametrize(
    ("handler", "expected_reason"),
    [
        pytest.param(
            respond(502, raw=HTML_502, content_type="text/html"),
            "HTTP 502 (server error; the charge may have executed: a non-JSON body (text/html",
            id="html-502",
        ),
        pytest.param(
            respond(200, raw=b'{"success": true, "data": {"payment_intent_id": "pi_1", "sta'),
            "truncated or invalid JSON",
            id="truncated-json",
        ),
        pytest.param(respond(200, raw=b""), "an empty body", id="empty-200"),
        pytest.param(
            respond(200, {"success": True, "message": "OK"}),
            "success: true with 'data' missing",
            id="success-without-data",
        ),
        pytest.param(
            respond(200, envelope(paid_data(amount="1999"))),
            "data.amount is the string '1999', not an integer",
            id="string-amount",
        ),
        pytest.param(
            respond(200, envelope(paid_data(amount=1999.0))),
            "data.amount is the number 1999.0, not an integer",
            id="float-amount",
        ),
        pytest.param(
            respond(200, envelope(paid_data(amount=True))),
            "data.amount is the boolean true",
            id="bool-amount",
        ),
        pytest.param(
            respond(200, envelope(paid_data(amount=2999))),
            "data.amount 2999 differs from the requested 1999",
            id="amount-mismatch",
        ),
        pytest.param(
            respond(200, envelope(paid_data(currency="EUR"))),
            "data.currency 'EUR' differs from the requested 'USD'",
            id="currency-mismatch",
        ),
        pytest.param(
            respond(200, envelope(paid_data(payment_method_id="pm_other"))),
            "data.payment_method_id is the string 'pm_other'",
            id="card-mismatch",
        ),
        pytest.param(
            respond(200, envelope(paid_data(payment_intent_id="ch_123"))),
            "not a pi_ id",
            id="pi-id-wrong-prefix",
        ),
        pytest.param(
            respond(200, envelope(paid_data(payment_intent_id="pi_"))),
            "not a pi_ id",
            id="pi-id-bare-prefix",
        ),
        pytest.param(
            respond(200, envelope(paid_data(payment_intent_id=None))),
            "data.payment_intent_id is missing/null",
            id="pi-id-missing",
        ),
        pytest.param(
            respond(200, envelope(paid_data(status="processing"))),
            "data.status is 'processing', not 'succeeded'",
            id="status-processing",
        ),
        pytest.param(
            respond(200, envelope(success=False, message="Something odd")),
            "success: false with 'data' missing",
            id="200-success-false",
        ),
        pytest.param(
            respond(200, envelope(paid_data(), success=False)),
            "success: false contradicts data.status 'succeeded'",
            id="200-success-false-but-succeeded",
        ),
        pytest.param(
            respond(200, {"success": "true", "data": paid_data()}),
            "'success' is the string 'true', not a boolean",
            id="success-as-string",
        ),
        pytest.param(respond(200, [paid_data()]), "the body is a JSON list", id="json-array"),
        pytest.param(
            respond(409, envelope(success=False, message="Key reused")),
            "idempotency conflict",
            id="409",
        ),
        pytest.param(
            respond(500, envelope(success=False, message="An error occurred")),
            "HTTP 500 (server error; the charge may have executed: An error occurred)",
            id="500-envelope",
        ),
        pytest.param(respond(503, raw=b"", content_type="text/plain"), "HTTP 503", id="503-empty"),
        pytest.param(
            respond(302, raw=b"", location="https://elsewhere.test/"), "HTTP 302", id="redirect"
        ),
        pytest.param(
            respond(400, envelope(paid_data())),
            "HTTP 400 but the body claims success: true",
            id="400-claiming-success",
        ),
        pytest.param(
            raise_(httpx.ReadTimeout, "timed out"),
            "failed after the request may have been sent: ReadTimeout: timed out",
            id="read-timeout",
        ),
        pytest.param(raise_(httpx.WriteTimeout), "WriteTimeout", id="write-timeout"),
        pytest.param(
            raise_(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
            "RemoteProtocolError: Server disconnected",
            id="remote-protocol-error",
        ),
        pytest.param(raise_(httpx.ReadError), "ReadError", id="read-error"),
    ],
)
def test_unknown_outcomes(handler: Any, expected_reason: str) -> None:
    outcome = charge(handler)
    assert isinstance(outcome, Unknown), outcome
    assert expected_reason in outcome.reason
    assert f"/public/customers/{CUSTOMER}/charge" in outcome.reason


@pytest.mark.parametrize(
    ("handler", "reason", "retry_after"),
    [
        pytest.param(
            raise_(httpx.ConnectError, "[Errno 111] Connection refused"),
            "ConnectError",
            None,
            id="connect-error",
        ),
        pytest.param(raise_(httpx.ConnectTimeout), "ConnectTimeout", None, id="connect-timeout"),
        pytest.param(raise_(httpx.PoolTimeout), "PoolTimeout", None, id="pool-timeout"),
        pytest.param(
            respond(429, envelope(success=False, message="Too many requests"), retry_after="7"),
            "rate limited",
            7.0,
            id="429-seconds",
        ),
        pytest.param(
            respond(429, envelope(success=False, message="Slow down")),
            "rate limited",
            None,
            id="429-without-retry-after",
        ),
    ],
)
def test_not_sent(handler: Any, reason: str, retry_after: float | None) -> None:
    outcome = charge(handler)
    assert isinstance(outcome, NotSent), outcome
    assert reason in outcome.reason
    assert outcome.retry_after == retry_after


def test_429_with_http_date_retry_after() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    outcome = charge(respond(429, envelope(success=False, message="x"), retry_after=when))
    assert isinstance(outcome, NotSent)
    assert outcome.retry_after is not None
    assert 25 <= outcome.retry_after <= 31


def test_402_is_authentication_required_as_documented() -> None:
    body = {"success": False, "message": "Payment requires additional authentication"}
    assert charge(respond(402, body)) == AuthenticationRequired(
        message="Payment requires additional authentication", http_status=402
    )


def test_402_with_html_body_is_still_authentication_required() -> None:
    outcome = charge(respond(402, raw=b"<html>Payment Required</html>"))
    assert isinstance(outcome, AuthenticationRequired)


def test_2xx_requires_action_is_authentication_required() -> None:
    outcome = charge(respond(200, envelope(paid_data(status="requires_action"))))
    assert isinstance(outcome, AuthenticationRequired)
    assert outcome.http_status == 200


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            envelope(success=False, message="Your card was declined (card_declined)"),
            "card_declined",
        ),
        (
            400,
            envelope(
                success=False, message="Your card has insufficient funds (insufficient_funds)"
            ),
            "insufficient_funds",
        ),
        (400, envelope(success=False, message="card_declined: expired_card"), "expired_card"),
        (422, envelope(success=False, message="stolen_card"), "stolen_card"),
        (404, envelope(success=False, message="No such customer: cus_abc123"), None),
        (
            400,
            envelope(success=False, message="Declined", data={"decline_code": "lost_card"}),
            "lost_card",
        ),
        (400, {"success": False, "message": "do not keep the card_declinedx"}, None),
    ],
)
def test_definite_4xx_is_declined_with_code(status: int, body: Any, code: str | None) -> None:
    outcome = charge(respond(status, body))
    assert isinstance(outcome, Declined), outcome
    assert outcome.reason_code == code
    assert outcome.http_status == status
    assert outcome.message == body["message"]


@pytest.mark.parametrize("status", ["failed", "declined"])
def test_2xx_with_failed_status_is_declined(status: str) -> None:
    body = envelope(paid_data(status=status), message="Your card was declined (card_declined)")
    outcome = charge(respond(200, body))
    assert outcome == Declined(
        reason_code="card_declined",
        message="Your card was declined (card_declined)",
        http_status=200,
    )


def test_400_with_non_json_body_is_declined_without_code() -> None:
    outcome = charge(respond(400, raw=b"Bad Request", content_type="text/plain"))
    assert isinstance(outcome, Declined)
    assert outcome.reason_code is None
    assert "HTTP 400 with a non-JSON body (text/plain" in outcome.message


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_raise_configuration_error_without_leaking_the_key(status: int) -> None:
    body = envelope(success=False, message=f"Invalid API key {API_KEY}")
    with pytest.raises(FastStarConfigurationError) as excinfo:
        charge(respond(status, body))
    text = str(excinfo.value)
    assert f"HTTP {status}" in text
    assert "charge" in text
    assert API_KEY not in text
    assert "[redacted]" in text
    assert excinfo.value.status_code == status


def test_404_without_envelope_means_wrong_base_url() -> None:
    with pytest.raises(FastStarConfigurationError, match="base URL is probably wrong"):
        charge(respond(404, raw=b"Not Found", content_type="text/plain"))


def test_unsupported_scheme_is_a_configuration_error() -> None:
    with pytest.raises(FastStarConfigurationError, match="UnsupportedProtocol"):
        charge(raise_(httpx.UnsupportedProtocol, "Request URL has an unsupported protocol"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cus_1", "pm_1", 0, "USD"), "amount must be a positive int"),
        (("cus_1", "pm_1", 19.99, "USD"), "amount must be a positive int"),
        (("cus_1", "pm_1", True, "USD"), "amount must be a positive int"),
        (("cus_1", "pm_1", 100, "usd"), "currency must be an upper-case"),
        (("cus_1", "pm_1", 100, "US"), "currency must be an upper-case"),
        (("cus_../x", "pm_1", 100, "USD"), "customer_id must be cus_..."),
        (("pm_1", "pm_1", 100, "USD"), "customer_id must be cus_..."),
        (("cus_1", "card_1", 100, "USD"), "payment_method_id must be pm_..."),
    ],
)
def test_bad_arguments_never_reach_the_network(args: Any, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    with client(handler) as c, pytest.raises(ValueError, match=message):
        c.charge_off_session(*args, idempotency_key="k1")


@pytest.mark.parametrize("key", ["", "has space", "ünïcode", "x" * 256, "line\nbreak"])
def test_bad_idempotency_keys_are_refused(key: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    with client(handler) as c, pytest.raises(ValueError, match="idempotency_key"):
        c.charge_off_session(CUSTOMER, CARD, AMOUNT, CURRENCY, idempotency_key=key)


def test_currency_comparison_is_case_insensitive() -> None:
    outcome = charge(respond(200, envelope(paid_data(currency="usd"))))
    assert isinstance(outcome, Paid)
    assert outcome.currency == "USD"
