"""``FastStarClient``: the typed, synchronous FastStar API client.

Synchronous because Celery workers are; one pooled ``httpx.Client`` per ``FastStarClient``
so keep-alive connections are reused between charges. Every path comes from Part A of
``docs/faststar.md``. The ``Idempotency-Key`` header we send on every POST is *not* documented
by FastStar (our sandbox honours it, Part B): correctness never depends on it, but it costs
nothing and protects us wherever it is honoured.

What each response means is decided in ``_classify.py``; this module only validates input,
sends, times and logs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

import httpx
import structlog

from renewals.crashpoints import crash_point

from ._classify import (
    classify_charge_response,
    classify_charge_transport_error,
    transport_error_to_exception,
    unwrap_envelope,
)
from ._errors import FastStarConfigurationError, FastStarError, FastStarMalformedResponse
from ._parse import (
    parse_checkout_session,
    parse_customer,
    parse_list,
    parse_payment_method,
    parse_price,
    parse_product,
    parse_setup_intent,
)
from ._ratelimit import TokenBucket
from ._types import (
    ChargeOutcome,
    CheckoutMode,
    CheckoutPresentation,
    CheckoutSession,
    Customer,
    LineItem,
    PaymentMethod,
    Price,
    PriceType,
    Product,
    RecurringInterval,
    SetupIntent,
)

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "FastStarClient"]

_T = TypeVar("_T")

# Connect fast (an unreachable FastStar is "not sent", retry later); give the charge itself
# time to run (15 s read); a pool wait longer than 2 s means we are overloading ourselves.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=3.0, read=15.0, write=5.0, pool=2.0)
DEFAULT_MAX_CONNECTIONS: Final = 20
# Below the usual 5 s idle timeout of servers (uvicorn, many proxies): writing a charge onto a
# keep-alive connection the server is closing at that instant would make its outcome unknown.
_KEEPALIVE_EXPIRY_S: Final = 4.0

_ID_CHARS: Final = re.compile(r"[A-Za-z0-9_\-]+")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: header-safe
_MAX_AMOUNT: Final = 2**63 - 1  # Part A: amounts are int64
_USER_AGENT: Final = f"renewals-faststar/0.1 httpx/{httpx.__version__}"
_JSON: Final = "application/json"

_logger = structlog.get_logger(__name__)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _crash_before_reading_a_charge(response: httpx.Response) -> None:
    # httpx calls response hooks once the status line and headers are in, before the body
    # is read: FastStar has answered the charge and we have not read what it said.
    if response.request.method == "POST" and response.request.url.path.endswith("/charge"):
        crash_point("request_sent_response_unread")


def _check_id(value: object, prefix: str, name: str) -> str:
    # Ids go into URL paths: restricting the alphabet rules out "../" and query injection.
    if (
        not isinstance(value, str)
        or not value.startswith(prefix)
        or len(value) <= len(prefix)
        or _ID_CHARS.fullmatch(value) is None
    ):
        shown = f"{prefix}..." if prefix else "an id of letters, digits, '_' and '-'"
        raise ValueError(f"{name} must be {shown}, got {value!r}")
    return value


def _check_key(value: object) -> str:
    if not isinstance(value, str) or _IDEMPOTENCY_KEY.fullmatch(value) is None:
        raise ValueError(f"idempotency_key must be 1-255 visible ASCII characters, got {value!r}")
    return value


def _check_currency(value: object, name: str = "currency") -> str:
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise ValueError(f"{name} must be an upper-case ISO 4217 code like 'USD', got {value!r}")
    return value


def _check_amount(value: object, name: str = "amount") -> int:
    if type(value) is not int or not 0 < value <= _MAX_AMOUNT:
        raise ValueError(f"{name} must be a positive int in the smallest unit, got {value!r}")
    return value


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


class FastStarClient:
    """Typed client for the FastStar API (Part A endpoints).

    ``base_url`` includes the version prefix, e.g. ``https://api.faststarpay.com/api/v1``.
    ``transport`` lets tests run against ``httpx.MockTransport`` or an in-process app;
    with a custom transport ``max_connections`` does not apply. ``rate_limit_per_s`` turns
    on the client-side token bucket (``rate_limit_burst`` tokens, default one second's worth).
    The environment (``HTTP_PROXY`` ...) is ignored unless ``trust_env=True``: where a payment
    goes should not depend on a stray variable.

    Thread-safe as far as ``httpx.Client`` is; one instance per worker process is the intent.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        rate_limit_per_s: float | None = None,
        rate_limit_burst: float | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        trust_env: bool = False,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FastStarConfigurationError(f"base_url is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
            raise FastStarConfigurationError(
                f"base_url must be an http(s) URL without query, got {base_url!r}"
            )
        if not isinstance(api_key, str) or not api_key or not api_key.isprintable():
            # Deliberately not echoing the value: it is a secret.
            raise FastStarConfigurationError("api_key must be a non-empty printable string")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self._api_key = api_key
        self._base_url = str(url).rstrip("/")
        self._max_connections = max_connections
        self._limiter = (
            None
            if rate_limit_per_s is None
            else TokenBucket(rate_limit_per_s, burst=rate_limit_burst)
        )
        self._http = httpx.Client(
            base_url=self._base_url,
            headers={"X-API-Key": api_key, "Accept": _JSON, "User-Agent": _USER_AGENT},
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=_KEEPALIVE_EXPIRY_S,
            ),
            transport=transport,
            follow_redirects=False,  # a redirected POST could be replayed or lose its body
            trust_env=trust_env,
            event_hooks={"response": [_crash_before_reading_a_charge]},
        )

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:  # never show the key
        return f"FastStarClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def max_connections(self) -> int:
        """The connection pool's size: calls beyond it wait for a free connection."""
        return self._max_connections

    def close(self) -> None:
        """Close pooled connections. Idempotent."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        # A server (or proxy) might echo the key back in an error message.
        return text.replace(self._api_key, "[redacted]") if self._api_key in text else text

    def _throttle(self) -> None:
        if self._limiter is not None:
            self._limiter.acquire()

    def _log(
        self,
        method: str,
        path: str,
        *,
        status: int | None,
        started: float,
        idempotency_key: str | None,
        outcome: str,
    ) -> None:
        # One event per request. Never the key, never bodies (emails, card data).
        _logger.debug(
            "faststar.request",
            method=method,
            path=path,
            status=status,
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 2),
            idempotency_key=idempotency_key,
            outcome=outcome,
        )

    def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[object, str], _T],
        *,
        body: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> _T:
        endpoint = f"{method} {path}"
        headers: dict[str, str] = {}
        content: bytes | None = None
        if body is not None:
            content = _dumps(body).encode()
            headers["Content-Type"] = _JSON
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        self._throttle()
        started = time.perf_counter()
        status: int | None = None
        outcome = "unexpected_error"  # overwritten below; a bug in a parser still gets logged
        try:
            try:
                response = self._http.request(method, path, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise transport_error_to_exception(
                    exc, endpoint=endpoint, redact=self._redact
                ) from exc
            status = response.status_code
            data = unwrap_envelope(
                status, response.headers, response.content, endpoint=endpoint, redact=self._redact
            )
            result = parse(data, endpoint)
            outcome = "ok"
            return result
        except FastStarError as error:
            outcome = type(error).__name__
            raise
        finally:
            self._log(
                method,
                path,
                status=status,
                started=started,
                idempotency_key=idempotency_key,
                outcome=outcome,
            )

    # ------------------------------------------------------------------ the charge (hot path)

    def charge_off_session(
        self,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        *,
        idempotency_key: str,
    ) -> ChargeOutcome:
        """``POST /public/customers/:id/charge`` with ``off_session: true``.

        Returns the outcome (``Paid``, ``AuthenticationRequired``, ``Declined``, ``NotSent``,
        ``Unknown``; see ``_classify``) instead of raising, because every one of them is a
        normal business result for the renewal worker. Raises ``FastStarConfigurationError``
        (401/403, wrong base URL) and ``ValueError`` for bad arguments, before anything is sent.
        """
        _check_id(customer_id, "cus_", "customer_id")
        _check_id(payment_method_id, "pm_", "payment_method_id")
        _check_amount(amount)
        _check_currency(currency)
        _check_key(idempotency_key)
        path = f"/public/customers/{customer_id}/charge"
        content = _dumps(
            {
                "payment_method_id": payment_method_id,
                "amount": amount,
                "currency": currency,
                "off_session": True,
            }
        ).encode()
        self._throttle()
        started = time.perf_counter()
        status: int | None = None
        outcome: ChargeOutcome
        try:
            try:
                response = self._http.post(
                    path,
                    content=content,
                    headers={"Content-Type": _JSON, "Idempotency-Key": idempotency_key},
                )
            except httpx.HTTPError as exc:
                outcome = classify_charge_transport_error(
                    exc, endpoint=f"POST {path}", redact=self._redact
                )
            else:
                status = response.status_code
                outcome = classify_charge_response(
                    status,
                    response.headers,
                    response.content,
                    amount=amount,
                    currency=currency,
                    payment_method_id=payment_method_id,
                    endpoint=f"POST {path}",
                    redact=self._redact,
                )
        except FastStarConfigurationError:
            self._log(
                "POST",
                path,
                status=status,
                started=started,
                idempotency_key=idempotency_key,
                outcome="configuration_error",
            )
            raise
        self._log(
            "POST",
            path,
            status=status,
            started=started,
            idempotency_key=idempotency_key,
            outcome=outcome.kind,
        )
        return outcome

    # ------------------------------------------------------------------ customers and cards

    def create_customer(
        self, *, email: str, name: str | None = None, idempotency_key: str
    ) -> Customer:
        """``POST /public/customers``."""
        body: dict[str, object] = {"email": _check_text(email, "email")}
        if name is not None:
            body["name"] = name
        return self._call(
            "POST",
            "/public/customers",
            lambda data, ep: parse_customer(data, endpoint=ep),
            body=body,
            idempotency_key=_check_key(idempotency_key),
        )

    def create_setup_intent(self, customer_id: str, *, idempotency_key: str) -> SetupIntent:
        """``POST /public/customers/:id/setup-intent`` (no body)."""
        _check_id(customer_id, "cus_", "customer_id")
        return self._call(
            "POST",
            f"/public/customers/{customer_id}/setup-intent",
            lambda data, ep: parse_setup_intent(data, endpoint=ep),
            idempotency_key=_check_key(idempotency_key),
        )

    def attach_payment_method(
        self, customer_id: str, setup_intent_id: str, *, idempotency_key: str
    ) -> PaymentMethod:
        """``POST /public/customers/:id/payment-methods`` with ``setup_intent_id``."""
        _check_id(customer_id, "cus_", "customer_id")
        _check_id(setup_intent_id, "seti_", "setup_intent_id")
        return self._call(
            "POST",
            f"/public/customers/{customer_id}/payment-methods",
            lambda data, ep: parse_payment_method(data, endpoint=ep),
            body={"setup_intent_id": setup_intent_id},
            idempotency_key=_check_key(idempotency_key),
        )

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethod]:
        """``GET /public/customers/:id/payment-methods``: the customer's saved cards."""
        _check_id(customer_id, "cus_", "customer_id")

        def parse(data: object, ep: str) -> list[PaymentMethod]:
            items = parse_list(data, endpoint=ep, what="payment_methods")
            return [parse_payment_method(item, endpoint=ep) for item in items]

        return self._call("GET", f"/public/customers/{customer_id}/payment-methods", parse)

    def set_default_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> None:
        """``POST /public/payment-methods/:id/default``. The response ``data`` is not
        documented, so only the envelope's success is checked."""
        _check_id(payment_method_id, "pm_", "payment_method_id")
        self._call(
            "POST",
            f"/public/payment-methods/{payment_method_id}/default",
            _ignore_data,
            idempotency_key=_check_key(idempotency_key),
        )

    def detach_payment_method(self, payment_method_id: str) -> None:
        """``DELETE /public/payment-methods/:id``. Response ``data`` undocumented; ignored."""
        _check_id(payment_method_id, "pm_", "payment_method_id")
        self._call("DELETE", f"/public/payment-methods/{payment_method_id}", _ignore_data)

    # ------------------------------------------------------------------ checkout sessions

    def create_checkout_session(
        self,
        *,
        mode: CheckoutMode,
        line_items: Sequence[LineItem],
        success_url: str,
        cancel_url: str,
        presentation: CheckoutPresentation | None = None,
        buyer_country: str | None = None,
        customer_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str,
    ) -> CheckoutSession:
        """``POST /public/checkout/sessions``; the result always carries the hosted ``url``.

        ``customer_id`` and ``metadata`` are **not** in FastStar's documentation (Part A says
        there is no documented way to tie a session to a customer); our sandbox accepts and
        echoes them (Part B). They are sent only when given, so production calls that omit
        them stay within the documented API.
        """
        if mode not in ("payment", "subscription", "setup"):
            raise ValueError(f"mode must be payment, subscription or setup, got {mode!r}")
        if presentation not in (None, "iframe", "link"):
            raise ValueError(f"presentation must be iframe or link, got {presentation!r}")
        items = list(line_items)
        if mode != "setup" and not items:
            raise ValueError(f"mode {mode!r} needs at least one line item")
        if mode == "subscription" and not any(item.price_id for item in items):
            raise ValueError("mode 'subscription' needs a line item with a recurring price_id")
        if buyer_country is not None and re.fullmatch(r"[A-Z]{2}", buyer_country) is None:
            raise ValueError(f"buyer_country must be ISO 3166-1 alpha-2, got {buyer_country!r}")
        for item in items:
            if item.ad_hoc_currency is not None:
                _check_currency(item.ad_hoc_currency, "ad_hoc_currency")
        body: dict[str, object] = {
            "mode": mode,
            "line_items": [item.to_json() for item in items],
            "success_url": _check_text(success_url, "success_url"),
            "cancel_url": _check_text(cancel_url, "cancel_url"),
        }
        if presentation is not None:
            body["presentation"] = presentation
        if buyer_country is not None:
            body["buyer_country"] = buyer_country
        if customer_id is not None:
            body["customer_id"] = _check_id(customer_id, "cus_", "customer_id")
        if metadata:
            body["metadata"] = dict(metadata)

        def parse(data: object, ep: str) -> CheckoutSession:
            session = parse_checkout_session(data, endpoint=ep)
            if not session.url:
                raise FastStarMalformedResponse(
                    f"{ep}: the created checkout session has no 'url'", endpoint=ep
                )
            return session

        return self._call(
            "POST",
            "/public/checkout/sessions",
            parse,
            body=body,
            idempotency_key=_check_key(idempotency_key),
        )

    def get_checkout_session(self, session_id: str) -> CheckoutSession:
        """``GET /public/checkout/sessions/:id``: status and amounts."""
        # Part A does not document the id prefix (the sandbox uses cs_), so none is required.
        _check_id(session_id, "", "session_id")
        return self._call(
            "GET",
            f"/public/checkout/sessions/{session_id}",
            lambda data, ep: parse_checkout_session(data, endpoint=ep),
        )

    # ------------------------------------------------------------------ catalog

    def create_product(
        self,
        *,
        name: str,
        description: str | None = None,
        tax_category: str | None = None,
        images: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str,
    ) -> Product:
        """``POST /merchant/catalog/products``."""
        body: dict[str, object] = {"name": _check_text(name, "name")}
        if description is not None:
            body["description"] = description
        if tax_category is not None:
            body["tax_category"] = tax_category
        if images:
            body["images"] = list(images)
        if metadata:
            body["metadata"] = dict(metadata)
        return self._call(
            "POST",
            "/merchant/catalog/products",
            lambda data, ep: parse_product(data, endpoint=ep),
            body=body,
            idempotency_key=_check_key(idempotency_key),
        )

    def list_products(self) -> list[Product]:
        """``GET /merchant/catalog/products`` (pagination is not documented)."""

        def parse(data: object, ep: str) -> list[Product]:
            items = parse_list(data, endpoint=ep, what="products")
            return [parse_product(item, endpoint=ep) for item in items]

        return self._call("GET", "/merchant/catalog/products", parse)

    def create_price(
        self,
        *,
        product_id: str,
        currency: str,
        unit_amount: int,
        type: PriceType | None = None,  # shadows the builtin on purpose: the API field name
        recurring_interval: RecurringInterval | None = None,
        recurring_interval_count: int | None = None,
        trial_period_days: int | None = None,
        idempotency_key: str,
    ) -> Price:
        """``POST /merchant/catalog/prices``. ``type='recurring'`` needs ``recurring_interval``."""
        _check_id(product_id, "prod_", "product_id")
        _check_currency(currency)
        _check_amount(unit_amount, "unit_amount")
        if type not in (None, "one_time", "recurring"):
            raise ValueError(f"type must be one_time or recurring, got {type!r}")
        recurring_fields = (recurring_interval, recurring_interval_count, trial_period_days)
        if type == "recurring" and recurring_interval is None:
            raise ValueError("a recurring price needs recurring_interval")
        if type != "recurring" and any(value is not None for value in recurring_fields):
            raise ValueError("recurring_* and trial_period_days need type='recurring'")
        body: dict[str, object] = {
            "product_id": product_id,
            "currency": currency,
            "unit_amount": unit_amount,
        }
        optional: dict[str, object | None] = {
            "type": type,
            "recurring_interval": recurring_interval,
            "recurring_interval_count": recurring_interval_count,
            "trial_period_days": trial_period_days,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return self._call(
            "POST",
            "/merchant/catalog/prices",
            lambda data, ep: parse_price(data, endpoint=ep),
            body=body,
            idempotency_key=_check_key(idempotency_key),
        )

    def list_prices(self) -> list[Price]:
        """``GET /merchant/catalog/prices`` (pagination is not documented)."""

        def parse(data: object, ep: str) -> list[Price]:
            items = parse_list(data, endpoint=ep, what="prices")
            return [parse_price(item, endpoint=ep) for item in items]

        return self._call("GET", "/merchant/catalog/prices", parse)


def _ignore_data(data: object, endpoint: str) -> None:
    return None
