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
from renewals.faststar import FastStarClient
from renewals.metrics.faststar import MeteredFastStarClient
from renewals.models.db import get_engine
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
