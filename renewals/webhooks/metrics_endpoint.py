"""``GET /metrics``: the host's process counters merged with the database's backlogs.

Served by the web process (``renewals webhooks``) next to the webhook endpoint, or, on a
host without one, by ``renewals metrics``. One endpoint per host is enough, and more would
repeat the same numbers: in multiprocess mode it merges the files every process of the host
writes (:mod:`renewals.metrics.setup`), and the database part is the same from anywhere.

The scrape reads the database, so it runs in a thread: webhooks are never kept waiting.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine

from renewals.metrics.setup import ENV
from renewals.services.backlog_gauges import DatabaseCollector

PATH = "/metrics"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _ThisProcess:
    """Without a multiprocess folder: this process's own metrics (the default registry)."""

    def collect(self) -> Iterator[Family]:
        yield from REGISTRY.collect()


def build_registry(engine: Engine, clock: Callable[[], datetime]) -> CollectorRegistry:
    registry = CollectorRegistry()
    folder = os.environ.get(ENV)
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector(engine, clock))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _respond(send, status, json.dumps(body).encode(), "application/json")


class MetricsApp:
    """ASGI: ``GET /metrics`` here, everything else to ``inner`` (or a health page at
    ``GET /`` and 404 when standing alone)."""

    def __init__(self, registry: CollectorRegistry, inner: ASGIApp | None = None) -> None:
        self.registry = registry
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            headers = dict(scope.get("headers", []))
            accept = headers.get(b"accept", b"").decode("latin-1")
            body, content_type = await asyncio.to_thread(render, self.registry, accept)
            await _respond(send, 200, body, content_type)
        elif self.inner is not None:
            await self.inner(scope, receive, send)
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            if scope["method"] == "GET" and scope["path"] == "/":
                await _json(send, 200, {"ok": True})
            else:
                await _json(send, 404, {"error": "not found"})


def with_metrics(
    inner: ASGIApp | None, engine: Engine, clock: Callable[[], datetime]
) -> MetricsApp:
    return MetricsApp(build_registry(engine, clock), inner)
