"""Every non-charge endpoint against httpx.MockTransport: request shape, typed results,
and the typed exceptions for broken or refusing servers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from renewals.faststar import (
    DEFAULT_TIMEOUT,
    CheckoutSession,
    Customer,
    FastStarClient,
    FastStarConfigurationError,
    FastStarError,
    FastStarMalformedResponse,
    FastStarNotSentError,
    FastStarRequestRejected,
    FastStarUnknownOutcomeError,
    LineItem,
    PaymentMethod,
    Price,
    Product,
    SetupIntent,
)
from tests.faststar.fakes import API_KEY, BASE_URL, CUSTOMER, client, envelope, raise_, respond

CARD_JSON = {"id": "pm_1", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}


class Recorder:
    """A fake FastStar answering each request with the next queued response."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json=envelope(data))


def test_create_customer() -> None:
    fake = Recorder(ok({"id": "cus_9", "email": "jane@example.com", "name": "Jane", "created": 1}))
    with client(fake) as c:
        customer = c.create_customer(email="jane@example.com", name="Jane", idempotency_key="c-1")
    assert customer == Customer(id="cus_9", email="jane@example.com", name="Jane")
    assert "jane@example.com" not in repr(customer)  # reprs end up in logs
    assert fake.last.method == "POST"
    assert fake.last.url.path == "/api/v1/public/customers"
    assert fake.last.headers["Idempotency-Key"] == "c-1"
    assert fake.last.headers["X-API-Key"] == API_KEY
    assert fake.last_json() == {"email": "jane@example.com", "name": "Jane"}


def test_setup_intent_attach_list_default_detach() -> None:
    fake = Recorder(
        ok(
            {
                "client_secret": "seti_1_secret_x",
                "publishable_key": "pk_x",
                "setup_intent_id": "seti_1",
            }
        ),
        ok(CARD_JSON),
        ok(
            [
                {**CARD_JSON, "is_default": True, "customer_id": CUSTOMER},
                {**CARD_JSON, "id": "pm_2", "last4": "0002"},
            ]
        ),
        ok({**CARD_JSON, "is_default": True}),
        ok({"id": "pm_1", "detached": True}),
    )
    with client(fake) as c:
        intent = c.create_setup_intent(CUSTOMER, idempotency_key="s-1")
        assert intent == SetupIntent("seti_1", "seti_1_secret_x", "pk_x")
        assert "secret" not in repr(intent)
        assert fake.last.url.path == f"/api/v1/public/customers/{CUSTOMER}/setup-intent"
        assert fake.last.content == b""

        card = c.attach_payment_method(CUSTOMER, "seti_1", idempotency_key="a-1")
        assert card == PaymentMethod("pm_1", "visa", "4242", 12, 2030)
        assert fake.last_json() == {"setup_intent_id": "seti_1"}
        assert fake.last.url.path == f"/api/v1/public/customers/{CUSTOMER}/payment-methods"

        cards = c.list_payment_methods(CUSTOMER)
        assert [(p.id, p.is_default, p.customer_id) for p in cards] == [
            ("pm_1", True, CUSTOMER),
            ("pm_2", False, None),
        ]
        assert fake.last.method == "GET"
        assert "Idempotency-Key" not in fake.last.headers

        c.set_default_payment_method("pm_1", idempotency_key="d-1")
        assert fake.last.url.path == "/api/v1/public/payment-methods/pm_1/default"
        assert fake.last.headers["Idempotency-Key"] == "d-1"

        c.detach_payment_method("pm_1")
        assert fake.last.method == "DELETE"
        assert fake.last.url.path == "/api/v1/public/payment-methods/pm_1"


def test_checkout_sessions() -> None:
    session = {
        "id": "cs_1",
        "url": "https://cashier.test/cs_1",
        "status": "open",
        "mode": "payment",
        "amount_subtotal": 1000,
        "amount_tax": 0,
        "amount_total": 1000,
        "currency": "USD",
        "expires_at": 99,
        "line_items": [],
        "metadata": {"renewal": "r-1"},
    }
    fake = Recorder(ok(session), ok({**session, "status": "complete", "url": None}))
    with client(fake) as c:
        created = c.create_checkout_session(
            mode="payment",
            line_items=[LineItem(price_id="price_1", quantity=2)],
            success_url="https://shop.test/ok",
            cancel_url="https://shop.test/cancel",
            presentation="link",
            buyer_country="DE",
            metadata={"renewal": "r-1"},
            idempotency_key="cs-1",
        )
        assert created.url == "https://cashier.test/cs_1"
        assert created.amount_total == 1000
        assert created.metadata == {"renewal": "r-1"}
        assert fake.last_json() == {
            "mode": "payment",
            "line_items": [{"price_id": "price_1", "quantity": 2}],
            "success_url": "https://shop.test/ok",
            "cancel_url": "https://shop.test/cancel",
            "presentation": "link",
            "buyer_country": "DE",
            "metadata": {"renewal": "r-1"},
        }
        fetched = c.get_checkout_session("cs_1")
        assert isinstance(fetched, CheckoutSession)
        assert fetched.status == "complete"
        assert fake.last.url.path == "/api/v1/public/checkout/sessions/cs_1"


def test_created_checkout_session_without_url_is_malformed() -> None:
    fake = Recorder(ok({"id": "cs_1", "status": "open"}))
    with client(fake) as c, pytest.raises(FastStarMalformedResponse, match="no 'url'"):
        c.create_checkout_session(
            mode="payment",
            line_items=[LineItem(ad_hoc_amount=500, ad_hoc_currency="EUR")],
            success_url="https://s",
            cancel_url="https://c",
            idempotency_key="k",
        )


def test_catalog() -> None:
    product = {
        "id": "prod_1",
        "name": "Pro",
        "description": None,
        "tax_category": None,
        "images": ["https://img"],
        "metadata": {"tier": "pro"},
        "created": 1,
        "active": True,
    }
    price = {
        "id": "price_1",
        "product_id": "prod_1",
        "currency": "USD",
        "unit_amount": 900,
        "type": "recurring",
        "recurring_interval": "month",
        "recurring_interval_count": 1,
        "trial_period_days": None,
        "created": 1,
        "active": True,
    }
    fake = Recorder(ok(product), ok([product]), ok(price), ok([price]))
    with client(fake) as c:
        created = c.create_product(
            name="Pro", images=["https://img"], metadata={"tier": "pro"}, idempotency_key="p-1"
        )
        assert created == Product(
            "prod_1", "Pro", images=("https://img",), metadata={"tier": "pro"}
        )
        assert fake.last.url.path == "/api/v1/merchant/catalog/products"
        assert c.list_products() == [created]
        made = c.create_price(
            product_id="prod_1",
            currency="USD",
            unit_amount=900,
            type="recurring",
            recurring_interval="month",
            idempotency_key="pr-1",
        )
        assert fake.last_json() == {
            "product_id": "prod_1",
            "currency": "USD",
            "unit_amount": 900,
            "type": "recurring",
            "recurring_interval": "month",
        }
        assert made == Price("price_1", "prod_1", "USD", 900, "recurring", "month", 1, None)
        assert c.list_prices() == [made]


@pytest.mark.parametrize(
    ("handler", "error", "text"),
    [
        (
            respond(500, envelope(success=False, message="Internal")),
            FastStarUnknownOutcomeError,
            "POST /public/customers answered HTTP 500 (the request may have executed): Internal",
        ),
        (
            respond(502, raw=b"<html>bad gateway</html>", content_type="text/html"),
            FastStarUnknownOutcomeError,
            "HTTP 502",
        ),
        (
            respond(200, raw=b"<html>hi</html>", content_type="text/html"),
            FastStarMalformedResponse,
            "a non-JSON body (text/html",
        ),
        (
            respond(200, raw=b'{"success": true, "da'),
            FastStarMalformedResponse,
            "truncated or invalid JSON",
        ),
        (
            respond(200, {"success": True, "message": "OK"}),
            FastStarMalformedResponse,
            "success: true but no 'data'",
        ),
        (
            respond(200, envelope(success=False, message="nope")),
            FastStarMalformedResponse,
            "'success' is the boolean false (nope)",
        ),
        (
            respond(200, envelope({"email": "x@y.z"})),
            FastStarMalformedResponse,
            "customer.id or customer_id should be present",
        ),
        (
            respond(200, envelope({"id": "usr_1"})),
            FastStarMalformedResponse,
            "customer.id should be a string starting 'cus_'",
        ),
        (
            respond(422, envelope(success=False, message="email is invalid")),
            FastStarRequestRejected,
            "HTTP 422: rejected: email is invalid",
        ),
        (
            respond(409, envelope(success=False, message="key reused")),
            FastStarUnknownOutcomeError,
            "idempotency conflict",
        ),
        (
            respond(429, envelope(success=False, message="slow"), retry_after="3"),
            FastStarNotSentError,
            "rate limited",
        ),
        (
            respond(401, envelope(success=False, message="bad key")),
            FastStarConfigurationError,
            "the API key was refused",
        ),
        (
            respond(403, envelope(success=False, message="forbidden")),
            FastStarConfigurationError,
            "HTTP 403",
        ),
        (raise_(httpx.ConnectError, "refused"), FastStarNotSentError, "was not sent"),
        (
            raise_(httpx.ReadTimeout, "timed out"),
            FastStarUnknownOutcomeError,
            "may have been sent: ReadTimeout",
        ),
        (
            raise_(httpx.RemoteProtocolError, "peer closed"),
            FastStarUnknownOutcomeError,
            "RemoteProtocolError",
        ),
    ],
)
def test_typed_errors(handler: Any, error: type[FastStarError], text: str) -> None:
    with client(handler) as c, pytest.raises(error) as excinfo:
        c.create_customer(email="x@y.z", idempotency_key="k")
    assert type(excinfo.value) is error
    assert text in str(excinfo.value)
    assert excinfo.value.endpoint == "POST /public/customers"
    assert API_KEY not in str(excinfo.value)


def test_rejected_carries_status_and_server_message() -> None:
    fake = respond(404, envelope(success=False, message="No such customer: cus_x"))
    with client(fake) as c, pytest.raises(FastStarRequestRejected) as excinfo:
        c.list_payment_methods("cus_x")
    assert excinfo.value.status_code == 404
    assert excinfo.value.server_message == "No such customer: cus_x"
    assert "GET /public/customers/cus_x/payment-methods answered HTTP 404" in str(excinfo.value)


def test_not_sent_carries_retry_after() -> None:
    fake = respond(429, envelope(success=False, message="x"), retry_after="2")
    with client(fake) as c, pytest.raises(FastStarNotSentError) as excinfo:
        c.list_products()
    assert excinfo.value.retry_after == 2.0
    assert excinfo.value.status_code == 429


def test_list_with_a_bad_item_is_malformed() -> None:
    bad = {**CARD_JSON, "exp_month": "12"}
    with (
        client(respond(200, envelope([CARD_JSON, bad]))) as c,
        pytest.raises(FastStarMalformedResponse, match="exp_month should be an integer"),
    ):
        c.list_payment_methods(CUSTOMER)


def test_every_post_requires_an_idempotency_key() -> None:
    with client(respond(200, envelope({}))) as c:
        for call in (
            lambda: c.create_customer(email="a@b.c"),  # type: ignore[call-arg]
            lambda: c.create_setup_intent(CUSTOMER),  # type: ignore[call-arg]
            lambda: c.set_default_payment_method("pm_1"),  # type: ignore[call-arg]
        ):
            with pytest.raises(TypeError, match="idempotency_key"):
                call()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "subscription", "line_items": [LineItem(product_id="prod_1")]},
        {"mode": "payment", "line_items": []},
        {"mode": "payment", "line_items": [LineItem(price_id="price_1")], "buyer_country": "de"},
        {"mode": "payment", "line_items": [LineItem(price_id="price_1")], "presentation": "popup"},
    ],
)
def test_checkout_input_is_checked_before_sending(kwargs: dict[str, Any]) -> None:
    with client(raise_(httpx.ConnectError)) as c, pytest.raises(ValueError):
        c.create_checkout_session(
            success_url="https://s", cancel_url="https://c", idempotency_key="k", **kwargs
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"price_id": "price_1", "product_id": "prod_1"},
        {"ad_hoc_amount": 100},
        {"price_id": "price_1", "quantity": 0},
        {"ad_hoc_amount": 0, "ad_hoc_currency": "USD"},
    ],
)
def test_line_item_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LineItem(**kwargs)


def test_price_validation() -> None:
    with client(raise_(httpx.ConnectError)) as c:
        with pytest.raises(ValueError, match="recurring_interval"):
            c.create_price(
                product_id="prod_1",
                currency="USD",
                unit_amount=1,
                type="recurring",
                idempotency_key="k",
            )
        with pytest.raises(ValueError, match="type='recurring'"):
            c.create_price(
                product_id="prod_1",
                currency="USD",
                unit_amount=1,
                recurring_interval="month",
                idempotency_key="k",
            )


def test_constructor_checks_and_repr_hides_the_key() -> None:
    for bad_url in ("ftp://x", "http://[::1", "https://x/api/v1?debug=1", "/api/v1"):
        with pytest.raises(FastStarConfigurationError, match="base_url"):
            FastStarClient(bad_url, API_KEY)
    with pytest.raises(FastStarConfigurationError) as excinfo:
        FastStarClient(BASE_URL, "")
    c = FastStarClient(BASE_URL + "/", API_KEY)
    assert API_KEY not in repr(c)
    assert c.base_url == BASE_URL
    assert "api_key" in str(excinfo.value)
    c.close()
    c.close()  # idempotent


def test_default_timeouts_are_explicit() -> None:
    assert (
        DEFAULT_TIMEOUT.connect,
        DEFAULT_TIMEOUT.read,
        DEFAULT_TIMEOUT.write,
        DEFAULT_TIMEOUT.pool,
    ) == (3.0, 15.0, 5.0, 2.0)


@pytest.fixture
def debug_logs() -> Any:
    """Capture structlog events at debug level whatever the suite configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


def test_one_debug_event_per_request_without_secrets(debug_logs: list[dict[str, Any]]) -> None:
    fake = Recorder(
        ok({"id": "cus_9", "email": "jane@example.com", "name": "Jane"}),
        httpx.Response(
            400, json=envelope(success=False, message="Your card was declined (card_declined)")
        ),
        httpx.Response(401, json=envelope(success=False, message=f"bad key {API_KEY}")),
    )
    with client(fake) as c:
        c.create_customer(email="jane@example.com", name="Jane", idempotency_key="c-1")
        c.charge_off_session(CUSTOMER, "pm_1", 500, "USD", idempotency_key="ch-1")
        with pytest.raises(FastStarConfigurationError):
            c.list_products()
    assert [
        (e["method"], e["path"], e["status"], e["outcome"], e["idempotency_key"])
        for e in debug_logs
    ] == [
        ("POST", "/public/customers", 200, "ok", "c-1"),
        ("POST", f"/public/customers/{CUSTOMER}/charge", 400, "declined", "ch-1"),
        ("GET", "/merchant/catalog/products", 401, "FastStarConfigurationError", None),
    ]
    for event in debug_logs:
        assert event["log_level"] == "debug"
        assert event["event"] == "faststar.request"
        assert isinstance(event["elapsed_ms"], float)
        flat = repr(event)
        for secret in (API_KEY, "jane@example.com", "Jane", "4242"):
            assert secret not in flat


def test_transport_failure_is_logged_with_its_class(debug_logs: list[dict[str, Any]]) -> None:
    with client(raise_(httpx.ConnectError)) as c:
        outcome = c.charge_off_session(CUSTOMER, "pm_1", 500, "USD", idempotency_key="ch-2")
    assert outcome.kind == "not_sent"
    assert [(e["status"], e["outcome"]) for e in debug_logs] == [(None, "not_sent")]
