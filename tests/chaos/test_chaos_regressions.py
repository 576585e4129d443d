"""Defects the chaos runs found, each kept fixed by a test named after its scenario."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.sandbox.testing import RunningSandbox
from tests.support.factories import Clock
from tests.support.inline import run_sweep, view


def test_chaos_error_after_charge_same_key_resends_back_off(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    """postgres-redis, 1 % 500-after-execute: with trusted keys every replay answers 500
    again. The janitor re-sent the key at the first recheck delay over and over (its checks
    never grew), so the payment's own webhook kept waiting on an attempt "still in flight"
    and the books never recorded the charge. Re-sends now follow the backoff."""
    trusting = settings.model_copy(update={"trust_idempotency_keys": True})
    sub_id = make_subscription("error_after_charge", renews_at=clock.now)

    def sends() -> int:
        return int(view(engine, sub_id)["renewals"][0]["attempts"][0]["sends"])

    run_sweep(engine, faststar, trusting, clock)
    assert view(engine, sub_id)["renewals"][0]["status"] == "unknown"
    clock.advance(minutes=5)
    run_sweep(engine, faststar, trusting, clock)
    assert sends() == 2  # the first same-key retry, at the first delay
    for _ in range(3):
        clock.advance(minutes=5)
        run_sweep(engine, faststar, trusting, clock)
    assert sends() == 2  # the next waits the second delay (1 h), not the first again
    clock.advance(minutes=50)
    run_sweep(engine, faststar, trusting, clock)
    assert sends() == 3
    assert len(sandbox.charges()) == 1  # replays, one execution


# The embedded run's other defect (workers starting together on a new broker database raced
# for kombu's queue row, and one stopped) is kept fixed by
# tests/processes/test_sqlite_broker_start.py (renewals/sqlite_broker.py).
