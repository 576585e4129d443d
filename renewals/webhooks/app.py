"""A plain ASGI app: ``POST /webhooks/faststar`` and a health page at ``GET /``.

The signature is verified on the raw body before anything is parsed (Part A); stale and
future timestamps, bad signatures and oversized bodies are refused before anything is
stored. A verified event is stored once and handed to ``on_stored`` (a Celery task in
production, published best effort); the answer goes back within milliseconds, the work
happens in the task. Once stored, the answer is 2xx even if the hand-off fails: the sweep
processes events left pending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import (
    FutureSignature,
    InvalidSignature,
    InvalidWebhookEvent,
    StaleSignature,
    parse_verified_event,
)
from renewals.webhooks.inbox import store_event

log = structlog.get_logger(__name__)

PATH = "/webhooks/faststar"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class WebhookApp:
    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        on_stored: Callable[[int], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.on_stored = on_stored
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/":
            await _respond(send, 200, {"ok": True})
        elif scope["method"] == "POST" and scope["path"] == PATH:
            status, body = await self._receive_event(scope, receive)
            await _respond(send, status, body)
        else:
            await _respond(send, 404, {"error": "not found"})

    def _hand_off(self, inbox_id: int) -> None:
        # The event is stored: from here on the answer is 2xx whatever the hand-off does, or
        # FastStar would retry an event we hold. The sweep picks up an event left pending.
        try:
            self.on_stored(inbox_id)
        except Exception as exc:  # one warning line, no traceback
            log.warning("webhook_handoff_failed", inbox_id=inbox_id, error=type(exc).__name__)

    async def _receive_event(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.webhook_max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return 413, {"error": f"body larger than {limit} bytes"}
        try:
            raw = await _read_body(receive, limit)
        except _TooLarge:
            return 413, {"error": f"body larger than {limit} bytes"}
        signature = headers.get("x-webhook-signature")
        if not signature:
            return 400, {"error": "missing X-Webhook-Signature"}
        try:
            event = parse_verified_event(
                self.settings.webhook_secrets(),
                signature,
                raw,
                now=int(self.clock()),
                tolerance_s=self.settings.webhook_tolerance_s,
            )
        except (StaleSignature, FutureSignature):
            log.warning("webhook_rejected", reason="timestamp outside tolerance")
            return 400, {"error": "timestamp outside tolerance"}
        except InvalidSignature:
            log.warning("webhook_rejected", reason="bad signature")
            return 401, {"error": "signature does not verify"}
        except InvalidWebhookEvent as exc:
            return 400, {"error": f"not a FastStar event: {exc}"}
        if headers.get("x-webhook-id", event.id) != event.id:
            return 400, {"error": "X-Webhook-ID differs from the event id"}
        now = datetime.fromtimestamp(self.clock(), UTC)
        inbox_id = await asyncio.to_thread(store_event, self.engine, event, now=now)
        if inbox_id is not None:
            await asyncio.to_thread(self._hand_off, inbox_id)
        log.info("webhook_received", event_id=event.id, type=event.type, new=inbox_id is not None)
        return 200, {"received": True, "duplicate": inbox_id is None}
