"""The sandbox ASGI app: a hand-rolled dispatcher and router over ``/api/v1``.

No framework on purpose: the hot path (an off-session charge with an Idempotency-Key) is
one header scan -> auth -> idempotency -> handler -> one JSON encode, with no request or
response objects in between (bench/sandbox_throughput.py measures it).

Order of checks for ``/public`` and ``/merchant``: API key (401), rate limit (429),
route (404/405), JSON body (400), idempotency (409 or replay), latency, handler.
``/sandbox`` controls skip the key, rate limit, latency and idempotency. Idempotency keys
are honoured on every POST under ``/public`` and ``/merchant`` (Part B).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from renewals.sandbox import api_catalog, api_checkout, api_controls, api_customers
from renewals.sandbox.idempotency import fingerprint
from renewals.sandbox.persistence import StoredResponse, open_persistence
from renewals.sandbox.ratelimit import retry_after_header
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import ApiError, Reply, failure, ok
from renewals.sandbox.state import SandboxState

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[], Reply]

log = logging.getLogger("renewals.sandbox")

API_PREFIX = "/api/v1/"
MAX_BODY_BYTES = 1 << 20
_JSON_HEADERS = [(b"content-type", b"application/json")]
_REPLAYED = (b"idempotent-replayed", b"true")


class ConnectionDropped(Exception):
    """Raised after sending only the response head, so the server closes the connection.

    uvicorn answers an app exception after ``http.response.start`` by closing the transport:
    the client gets a status line and a Content-Length, then EOF (a truncated response).
    ``server.quiet_deliberate_drops`` keeps uvicorn from logging it as a crash.
    """


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


# Each route: path pattern under /api/v1 ("*" captures an id) -> handler per HTTP method.
# Handlers are called as handler(state, request, *captured_ids).
ROUTES: list[tuple[str, dict[str, Callable[..., Reply]]]] = [
    ("public/customers", {"POST": api_customers.create_customer}),
    ("public/customers/*", {"GET": api_customers.get_customer}),
    ("public/customers/*/setup-intent", {"POST": api_customers.create_setup_intent}),
    (
        "public/customers/*/payment-methods",
        {
            "POST": api_customers.attach_payment_method,
            "GET": api_customers.list_payment_methods,
        },
    ),
    ("public/customers/*/charge", {"POST": api_customers.charge}),
    ("public/payment-methods/*/default", {"POST": api_customers.set_default_payment_method}),
    ("public/payment-methods/*", {"DELETE": api_customers.detach_payment_method}),
    ("public/checkout/sessions", {"POST": api_checkout.create_session}),
    ("public/checkout/sessions/*", {"GET": api_checkout.get_session}),
    (
        "merchant/catalog/products",
        {"POST": api_catalog.create_product, "GET": api_catalog.list_products},
    ),
    ("merchant/catalog/prices", {"POST": api_catalog.create_price, "GET": api_catalog.list_prices}),
    ("sandbox/setup-intents/*/card", {"POST": api_controls.enter_card}),
    ("sandbox/checkout/sessions/*/complete", {"POST": api_checkout.complete_session}),
    ("sandbox/checkout/sessions/*/expire", {"POST": api_checkout.expire_session}),
    ("sandbox/charges", {"GET": api_controls.list_charges}),
    ("sandbox/payments/*/refund", {"POST": api_controls.refund_payment}),
    ("sandbox/payments/*/dispute", {"POST": api_controls.dispute_payment}),
    ("sandbox/events", {"GET": api_controls.list_events}),
    ("sandbox/config", {"GET": api_controls.get_config, "POST": api_controls.update_config}),
    ("sandbox/reset", {"POST": api_controls.reset}),
]


class Router:
    """Matches split paths against ROUTES; routes are bucketed by segment count."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[list[str], dict[str, Callable[..., Reply]]]]] = {}
        for pattern, methods in ROUTES:
            segments = pattern.split("/")
            self._by_length.setdefault(len(segments), []).append((segments, methods))

    def match(self, parts: list[str]) -> tuple[dict[str, Callable[..., Reply]], list[str]]:
        """The handlers by method and the captured ids; ({}, []) for an unknown path."""
        for segments, methods in self._by_length.get(len(parts), ()):
            captured = []
            for segment, part in zip(segments, parts, strict=True):
                if segment == "*":
                    if not part:
                        break
                    captured.append(part)
                elif segment != part:
                    break
            else:
                return methods, captured
        return {}, []


class SandboxApp:
    """ASGI 3 application holding one sandbox's state."""

    def __init__(self, state_path: Path | None = None) -> None:
        self.state = SandboxState(open_persistence(state_path))
        self.router = Router()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.webhooks.close()
                self.state.persistence.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            body = await _read_body(receive)
        except _ClientGone:
            return
        if body is None:
            reply = failure(413, "Request body too large")
        elif path.startswith(API_PREFIX):
            reply = await self._api(scope, path, body)
        elif path == "/":
            reply = ok({"service": "faststar-sandbox", "api": "/api/v1"}, "FastStar sandbox")
        elif path.startswith("/checkout/") and scope["method"] == "GET":
            status, page = api_checkout.checkout_page(self.state, path[len("/checkout/") :])
            await _send(send, status, page.encode("utf-8"), [(b"content-type", b"text/html")])
            return
        else:
            reply = failure(404, "Not found")
        if reply.drop_after_headers:
            head = [*_JSON_HEADERS, (b"content-length", str(len(reply.body)).encode("ascii"))]
            await send({"type": "http.response.start", "status": reply.status, "headers": head})
            raise ConnectionDropped
        await _send(send, reply.status, reply.body, [*_JSON_HEADERS, *reply.headers])

    async def _api(self, scope: Scope, path: str, raw_body: bytes) -> Reply:
        state = self.state
        parts = path[len(API_PREFIX) :].rstrip("/").split("/")
        method: str = scope["method"]
        api_key, idempotency_key, host = _read_headers(scope["headers"])
        controls = parts[0] == "sandbox"
        if not controls:
            refusal = self._refuse(api_key)
            if refusal is not None:
                return refusal
        methods, ids = self.router.match(parts)
        handler = methods.get(method)
        if handler is None:
            if methods:
                return failure(405, f"Method {method} not allowed on {path}")
            return failure(404, f"No route for {method} {path}")
        try:
            body = _parse_json_object(raw_body)
        except ApiError as error:
            return error.reply()
        request = ApiRequest(method, path, body, host, idempotency_key)
        call: Handler = partial(handler, state, request, *ids)
        if not controls:
            if method == "POST" and idempotency_key is not None and state.config.idempotency:
                return await self._idempotent(request, idempotency_key, call)
            await _latency(state.config.latency_ms)
        reply = _run(call)
        state.persistence.commit()
        return reply

    def _refuse(self, api_key: str | None) -> Reply | None:
        """401 for a bad key, 429 when the rate limit is on and exhausted, else None."""
        if api_key is None or not api_key.startswith("sk_test_"):
            return failure(401, "Invalid or missing API key")
        rate = self.state.config.rate_limit_per_s
        if rate is not None:
            wait = self.state.rate_limit.take(rate)
            if wait is not None:
                reply = failure(429, "Too many requests")
                reply.headers.append((b"retry-after", retry_after_header(wait).encode()))
                return reply
        return None

    async def _idempotent(self, request: ApiRequest, key: str, handler: Handler) -> Reply:
        state = self.state
        request_fingerprint = fingerprint(request.method, request.path, request.body)
        try:
            stored = state.idempotency.begin(key, request_fingerprint)
        except ApiError as conflict:
            return conflict.reply()
        if stored is not None:
            await _latency(state.config.latency_ms)
            return Reply(stored.status, stored.body, [_REPLAYED])
        try:
            await _latency(state.config.latency_ms)
            reply = _run(handler)
        except BaseException:
            state.idempotency.abandon(key)
            raise
        # A dropped-connection reply is stored as the success it was: a retry replays it.
        state.idempotency.finish(key, StoredResponse(request_fingerprint, reply.status, reply.body))
        state.persistence.commit()
        return reply


def _read_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str]:
    """(X-API-Key, Idempotency-Key, Host) in one pass over the raw ASGI headers."""
    api_key = idempotency_key = None
    host = "127.0.0.1"
    for name, value in headers:
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
        elif name == b"idempotency-key":
            idempotency_key = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
    return api_key, idempotency_key, host


async def _latency(latency_ms: float) -> None:
    """The configured artificial latency (skipped entirely when 0: no extra await)."""
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)


def _run(handler: Handler) -> Reply:
    try:
        return handler()
    except ApiError as error:
        return error.reply()
    except Exception:
        log.exception("sandbox handler failed")
        return failure(500, "Internal sandbox error")


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return value


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if it exceeds MAX_BODY_BYTES."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message
        return body if len(body) <= MAX_BODY_BYTES else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(state_path: Path | None = None) -> SandboxApp:
    """A fresh sandbox; with ``state_path`` its state is loaded from and written to SQLite."""
    return SandboxApp(state_path)
