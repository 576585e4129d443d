"""Merchant events on SQLite and PostgreSQL: a real receiver on a loopback port that checks
every delivery with the documented snippet, and an engine that writes the events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import MerchantEvent
from renewals.models.db import unit_of_work
from renewals.services.commands import command_view, run_command, submit
from renewals.transitions import enable_merchant_events
from tests.support.factories import Clock
from tests.support.inline import run_follow_ups
from tests.support.merchant_receiver import Receiver, merchant_receiver

SECRET = "merchant-test-secret-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with merchant_receiver(SECRET) as running:
        yield running


@pytest.fixture
def hook_settings(settings: Settings, receiver: Receiver) -> Settings:
    """The test's settings with the receiver as the merchant's backend."""
    return settings.model_copy(
        update={
            "merchant_webhook_url": receiver.url,
            "merchant_webhook_secret": SecretStr(SECRET),
        }
    )


@pytest.fixture
def events_on(engine: Engine) -> Iterator[Engine]:
    """The engine writes merchant events (what the worker does when a URL is set)."""
    enable_merchant_events(engine)
    yield engine
    enable_merchant_events(engine, enabled=False)


def event_rows(engine: Engine, subscription_id: int | None = None) -> list[MerchantEvent]:
    with unit_of_work(engine) as session:
        query = select(MerchantEvent).order_by(MerchantEvent.id)
        if subscription_id is not None:
            query = query.where(MerchantEvent.subscription_id == subscription_id)
        return list(session.scalars(query))


def types_of(engine: Engine, subscription_id: int) -> list[str]:
    return [row.type for row in event_rows(engine, subscription_id)]


@pytest.fixture
def operator(
    engine: Engine, faststar: FastStarClient, settings: Settings, clock: Clock
) -> Callable[..., dict[str, Any]]:
    """Send an operator command and run it as its task would (with what it hands on)."""

    def send(name: str, **args: Any) -> dict[str, Any]:
        command_id = submit(engine, name, args, actor="operator:test", now=clock())
        follow = run_command(settings, engine, faststar, clock, command_id)
        run_follow_ups(engine, faststar, settings, clock, follow)
        with unit_of_work(engine) as session:
            view = command_view(session, command_id)
        assert view is not None and view["status"] == "done", view
        return view

    return send
