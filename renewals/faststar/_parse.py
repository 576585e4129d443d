"""Hand-written parsers from an envelope's ``data`` to the typed results in ``_types.py``.

Why not pydantic: the messages here name the endpoint and the exact field, never quote
values (which may be emails), and the cost is a handful of dict lookups. Documented (Part A)
fields are required; Part B / undocumented fields are optional. Unknown extra fields are
ignored so FastStar can add fields without breaking us.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from ._errors import FastStarMalformedResponse
from ._types import CheckoutSession, Customer, PaymentMethod, Price, Product, SetupIntent

__all__ = [
    "parse_checkout_session",
    "parse_customer",
    "parse_list",
    "parse_payment_method",
    "parse_price",
    "parse_product",
    "parse_setup_intent",
]

_MISSING: Final = object()


class _Fields:
    """Typed access to one JSON object, raising ``FastStarMalformedResponse`` with context."""

    __slots__ = ("_data", "_endpoint", "_what")

    def __init__(self, data: object, *, endpoint: str, what: str) -> None:
        if not isinstance(data, dict):
            raise FastStarMalformedResponse(
                f"{endpoint}: expected {what} object in 'data', got {_type_name(data)}",
                endpoint=endpoint,
            )
        self._data: dict[str, object] = data
        self._endpoint = endpoint
        self._what = what

    def _fail(self, key: str, expected: str, value: object) -> FastStarMalformedResponse:
        return FastStarMalformedResponse(
            f"{self._endpoint}: {self._what}.{key} should be {expected}, got {_type_name(value)}",
            endpoint=self._endpoint,
        )

    def str_(self, key: str, *, prefix: str = "") -> str:
        value = self._data.get(key, _MISSING)
        if not isinstance(value, str) or not value or not value.startswith(prefix):
            expected = f"a string starting {prefix!r}" if prefix else "a non-empty string"
            raise self._fail(key, expected, value)
        return value

    def first_str(self, *keys: str, prefix: str = "") -> str:
        """The first of ``keys`` present (for fields whose name FastStar does not document)."""
        for key in keys:
            if key in self._data:
                return self.str_(key, prefix=prefix)
        raise self._fail(" or ".join(keys), "present", _MISSING)

    def opt_str(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "a string or null", value)
        return value

    def int_(self, key: str) -> int:
        value = self._data.get(key, _MISSING)
        if type(value) is not int:  # bool is an int subclass; "12" and 12.0 are not ints here
            raise self._fail(key, "an integer", value)
        return value

    def opt_int(self, key: str) -> int | None:
        value = self._data.get(key)
        if value is None:
            return None
        if type(value) is not int:
            raise self._fail(key, "an integer or null", value)
        return value

    def bool_(self, key: str, default: bool) -> bool:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean", value)
        return value

    def str_tuple(self, key: str) -> tuple[str, ...]:
        value = self._data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def str_map(self, key: str) -> MappingProxyType[str, str]:
        value = self._data.get(key)
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "an object of strings", value)
        return MappingProxyType(dict(value))


def _type_name(value: object) -> str:
    if value is _MISSING:
        return "nothing (missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string (other format)"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_customer(data: object, *, endpoint: str) -> Customer:
    f = _Fields(data, endpoint=endpoint, what="customer")
    # Part A does not show the id field; ``id`` is the convention, ``customer_id`` a fallback.
    return Customer(
        id=f.first_str("id", "customer_id", prefix="cus_"),
        email=f.opt_str("email"),
        name=f.opt_str("name"),
    )


def parse_setup_intent(data: object, *, endpoint: str) -> SetupIntent:
    f = _Fields(data, endpoint=endpoint, what="setup_intent")
    return SetupIntent(
        setup_intent_id=f.str_("setup_intent_id", prefix="seti_"),
        client_secret=f.str_("client_secret"),
        publishable_key=f.opt_str("publishable_key"),
    )


def parse_payment_method(data: object, *, endpoint: str) -> PaymentMethod:
    f = _Fields(data, endpoint=endpoint, what="payment_method")
    return PaymentMethod(
        id=f.str_("id", prefix="pm_"),
        brand=f.str_("brand"),
        last4=f.str_("last4"),
        exp_month=f.int_("exp_month"),
        exp_year=f.int_("exp_year"),
        is_default=f.bool_("is_default", default=False),
        customer_id=f.opt_str("customer_id"),
    )


def parse_checkout_session(data: object, *, endpoint: str) -> CheckoutSession:
    f = _Fields(data, endpoint=endpoint, what="checkout_session")
    return CheckoutSession(
        id=f.first_str("id", "session_id"),
        url=f.opt_str("url"),
        status=f.opt_str("status"),
        mode=f.opt_str("mode"),
        amount_subtotal=f.opt_int("amount_subtotal"),
        amount_tax=f.opt_int("amount_tax"),
        amount_total=f.opt_int("amount_total"),
        currency=f.opt_str("currency"),
        expires_at=f.opt_int("expires_at"),
        payment_intent_id=f.opt_str("payment_intent_id"),
        customer_id=f.opt_str("customer_id"),
        metadata=f.str_map("metadata"),
    )


def parse_product(data: object, *, endpoint: str) -> Product:
    f = _Fields(data, endpoint=endpoint, what="product")
    return Product(
        id=f.str_("id", prefix="prod_"),
        name=f.str_("name"),
        description=f.opt_str("description"),
        tax_category=f.opt_str("tax_category"),
        images=f.str_tuple("images"),
        metadata=f.str_map("metadata"),
    )


def parse_price(data: object, *, endpoint: str) -> Price:
    f = _Fields(data, endpoint=endpoint, what="price")
    return Price(
        id=f.str_("id", prefix="price_"),
        product_id=f.str_("product_id", prefix="prod_"),
        currency=f.str_("currency"),
        unit_amount=f.int_("unit_amount"),
        type=f.opt_str("type"),
        recurring_interval=f.opt_str("recurring_interval"),
        recurring_interval_count=f.opt_int("recurring_interval_count"),
        trial_period_days=f.opt_int("trial_period_days"),
    )


def parse_list(data: object, *, endpoint: str, what: str) -> list[object]:
    """The items of a list response. Part B: ``data`` is a JSON array. Pagination is not
    documented; an object wrapping the array under ``data``/``items`` is accepted too."""
    if isinstance(data, list):
        return list(data)
    if isinstance(data, dict):
        for key in ("data", "items", what):
            inner = data.get(key)
            if isinstance(inner, list):
                return list(inner)
    raise FastStarMalformedResponse(
        f"{endpoint}: expected a list of {what} in 'data', got {_type_name(data)}",
        endpoint=endpoint,
    )
