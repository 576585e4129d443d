"""The process-wide collaborators tasks and commands share: settings, engine, FastStar
client, mail sender and the clock. Built lazily once per process (after a fork, again)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from renewals.config import Settings, get_settings
from renewals.faststar import DEFAULT_MAX_CONNECTIONS, FastStarClient
from renewals.metrics.faststar import MeteredFastStarClient
from renewals.models.db import expect_tasks_at_once, get_engine, tasks_at_once
from renewals.notifications.senders import Sender, sender_from_url
from renewals.transitions.merchant_events import enable_merchant_events


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    faststar: FastStarClient
    sender: Sender

    @staticmethod
    def clock() -> datetime:
        return utcnow()


def build_runtime(settings: Settings) -> Runtime:
    engine = get_engine(settings.database_url)
    # Without a receiver no merchant event is written (they would only pile up).
    enable_merchant_events(engine, settings.merchant_webhook_url is not None)
    timeout = httpx.Timeout(
        connect=settings.faststar_connect_timeout,
        read=settings.faststar_read_timeout,
        write=settings.faststar_read_timeout,
        pool=settings.faststar_connect_timeout,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        faststar=MeteredFastStarClient(
            settings.faststar_base_url,
            settings.faststar_api_key.get_secret_value(),
            timeout=timeout,
            rate_limit_per_s=settings.faststar_rate_limit_per_s,
            # One connection per task that may call at once, so none waits for the pool.
            max_connections=tasks_at_once() or DEFAULT_MAX_CONNECTIONS,
        ),
        sender=sender_from_url(settings.mail_url),
    )


_lock = threading.Lock()
_runtimes: dict[int, Runtime] = {}


def get_runtime() -> Runtime:
    with _lock:
        runtime = _runtimes.get(os.getpid())
        if runtime is None:
            runtime = _runtimes[os.getpid()] = build_runtime(get_settings())
        return runtime


def size_for_tasks_at_once(count: int | None) -> None:
    """The worker calls this at start with how many tasks its pool runs at once in this
    process: the database pool and the FastStar client's connection pool are sized to it."""
    expect_tasks_at_once(count)
    with _lock:
        runtime = _runtimes.pop(os.getpid(), None)
    if runtime is not None:
        runtime.faststar.close()
