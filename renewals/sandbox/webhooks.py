"""Webhook events: the sandbox's event log and signed delivery in the background.

Envelope, headers and signature are FastStar's documented ones (Part A). Everything about
*how* they are sent is our Part B choice, since FastStar documents no retry schedule or
ordering: one background worker sends events in order; a failed delivery (non-2xx or a
connection error) is retried from its own task after ``webhook_retry_base_s * 2**(n-1)``
seconds, up to ``webhook_max_attempts`` attempts in all; ``webhook_duplicates`` sends every
event a second time; ``webhook_reorder`` holds events for a short window and sends each
batch newest first. Requests never wait for any of this.

Payment events carry extras by default (``customer_id``, ``payment_method_id``,
``checkout_session_id``), which FastStar does not document; ``webhook_documented_shape``
strips them at emission, so the log and every delivery show exactly the documented
``payment_id``, ``amount``, ``currency`` and ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from renewals.faststar.signatures import signature_header
from renewals.sandbox.ids import new_id
from renewals.sandbox.persistence import Persistence
from renewals.sandbox.responses import JSON, encode_json
from renewals.sandbox.settings import SandboxConfig

log = logging.getLogger("renewals.sandbox.webhooks")

# Part A: what FastStar documents a payment event's ``data`` to carry, and nothing more.
DOCUMENTED_PAYMENT_FIELDS = ("payment_id", "amount", "currency", "status")


def documented_shape(event_type: str, data: JSON) -> JSON:
    """``data`` as FastStar documents it: payment events keep only the documented keys."""
    if not event_type.startswith("payment."):
        return data
    return {key: data[key] for key in DOCUMENTED_PAYMENT_FIELDS if key in data}


@dataclass(slots=True)
class LoggedEvent:
    """One event as the sandbox emitted it, with what happened to its delivery."""

    event: JSON
    body: bytes
    state: str = "pending"  # pending | delivered | failed | not_sent | restored
    attempts: int = 0
    deliveries: int = 0
    last_status: int | None = None
    last_error: str | None = None

    def public(self) -> JSON:
        data = dict(self.event)
        data["delivery"] = {
            "state": self.state,
            "attempts": self.attempts,
            "deliveries": self.deliveries,
            "last_status": self.last_status,
            "last_error": self.last_error,
        }
        return data


class WebhookDispatcher:
    def __init__(self, config: Callable[[], SandboxConfig], persistence: Persistence) -> None:
        self._config = config
        self._persistence = persistence
        self.log: list[LoggedEvent] = []
        self._queue: asyncio.Queue[LoggedEvent] = asyncio.Queue()
        self._held: list[LoggedEvent] = []
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def restore(self, events: list[JSON]) -> None:
        """Events from a state file: listed again, never re-sent."""
        self.log.extend(LoggedEvent(e, encode_json(e), state="restored") for e in events)

    def emit(self, event_type: str, data: JSON) -> JSON:
        """Log an event and queue it for delivery; returns the envelope. Never blocks."""
        config = self._config()
        if config.webhook_documented_shape:
            data = documented_shape(event_type, data)
        event: JSON = {
            "id": new_id("evt"),
            "type": event_type,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "api_version": "v1",
        }
        entry = LoggedEvent(event, encode_json(event))
        self.log.append(entry)
        self._persistence.append_event(event)
        if config.webhook_url is None:
            entry.state = "not_sent"
            return event
        self._ensure_worker()
        if config.webhook_reorder:
            self._held.append(entry)
            if len(self._held) == 1:
                self._spawn(self._flush_held_after(config.webhook_reorder_window_s))
        else:
            self._queue.put_nowait(entry)
        return event

    def reset(self) -> None:
        """Drop every pending delivery and the log (``POST /sandbox/reset``)."""
        for task in self._all_tasks():
            task.cancel()
        self._tasks.clear()
        self._worker = None
        self._queue = asyncio.Queue()
        self._held.clear()
        self.log.clear()

    async def close(self) -> None:
        """Stop delivering and release the HTTP client (server shutdown)."""
        tasks = self._all_tasks()
        self.reset()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _all_tasks(self) -> list[asyncio.Task[None]]:
        return [*self._tasks, *([self._worker] if self._worker is not None else [])]

    # -- delivery -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_held_after(self, window_s: float) -> None:
        await asyncio.sleep(window_s)
        batch, self._held = self._held, []
        for entry in reversed(batch):
            self._queue.put_nowait(entry)

    async def _run(self) -> None:
        while True:
            entry = await self._queue.get()
            config = self._config()
            await self._attempt(entry)
            if config.webhook_duplicates:
                await self._attempt(entry)

    async def _attempt(self, entry: LoggedEvent) -> None:
        """One POST; schedules the next retry if it failed and attempts remain."""
        config = self._config()
        url = config.webhook_url
        if url is None:
            entry.state = "not_sent"
            return
        if self._client is None:
            self._client = httpx.AsyncClient()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "FastStar-Sandbox-Webhooks/1",
            "X-Webhook-ID": entry.event["id"],
            "X-Webhook-Timestamp": str(timestamp),
            "X-Webhook-Signature": signature_header(config.webhook_secret, timestamp, entry.body),
        }
        entry.attempts += 1
        try:
            response = await self._client.post(
                url, content=entry.body, headers=headers, timeout=config.webhook_timeout_s
            )
        except Exception as exc:  # any failure to deliver is a failed attempt, never a crash
            entry.last_status, entry.last_error = None, type(exc).__name__
        else:
            entry.last_status, entry.last_error = response.status_code, None
            if response.is_success:
                entry.deliveries += 1
                entry.state = "delivered"
                return
        if entry.state == "delivered":  # the duplicate copy failed; the event got through
            return
        if entry.attempts >= config.webhook_max_attempts:
            entry.state = "failed"
            log.warning("webhook %s gave up after %d attempts", entry.event["id"], entry.attempts)
            return
        delay = config.webhook_retry_base_s * 2 ** (entry.attempts - 1)
        self._spawn(self._retry_after(entry, delay))

    async def _retry_after(self, entry: LoggedEvent, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if entry.state != "delivered":  # a duplicate copy may have got through meanwhile
            await self._attempt(entry)
