"""Helpers for playing a FastStar server with ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from renewals.faststar import FastStarClient

BASE_URL = "https://api.faststar.test/api/v1"
API_KEY = "sk_test_do_not_leak_4f8a2c"
CUSTOMER = "cus_abc123"
CARD = "pm_card123"
AMOUNT = 1999
CURRENCY = "USD"

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(data: Any = None, *, success: bool = True, message: str = "OK") -> dict[str, Any]:
    body: dict[str, Any] = {"success": success, "message": message}
    if data is not None:
        body["data"] = data
    return body


def paid_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "payment_intent_id": "pi_123abc",
        "status": "succeeded",
        "amount": AMOUNT,
        "currency": CURRENCY,
        "payment_method_id": CARD,
    }
    data.update(overrides)
    return data


def respond(status: int, body: Any = None, *, raw: bytes | None = None, **headers: str) -> Handler:
    """A handler answering every request with one fixed response."""
    content = raw if raw is not None else json.dumps(body).encode()
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    if raw is None:
        hdrs.setdefault("content-type", "application/json")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=hdrs)

    return handler


def raise_(exc_type: type[httpx.TransportError], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return handler


def client(handler: Handler, **kwargs: Any) -> FastStarClient:
    return FastStarClient(BASE_URL, API_KEY, transport=httpx.MockTransport(handler), **kwargs)


def charge(handler: Handler) -> Any:
    with client(handler) as c:
        return c.charge_off_session(CUSTOMER, CARD, AMOUNT, CURRENCY, idempotency_key="att-1")
