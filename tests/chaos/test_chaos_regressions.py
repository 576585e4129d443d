"""Defects the chaos runs found, each kept fixed by a test named after its scenario."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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


def test_chaos_embedded_workers_starting_together_all_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """embedded, 4 workers started at once on a new broker database: kombu's SQLAlchemy
    transport guards the queue row's insert with a lock of one process only, so one worker
    lost the race and stopped ("Unrecoverable error: IntegrityError … kombu_queue.name").
    The queue is now declared before the worker starts, again when the insert lost."""
    from kombu.transport import sqlalchemy as kombu_sqla
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    from renewals.worker.celery_app import make_celery
    from renewals.worker.queues import declare_task_queue

    broker = tmp_path / "broker.db"
    app = make_celery(Settings(broker_url=f"sqla+sqlite:///{broker}"))
    declare_task_queue(app)  # the other process won: the row exists
    real = kombu_sqla.Channel._get_or_create
    lost = []

    def racing(self: Any, queue: str) -> Any:
        if not lost:  # this process read "no row" before the winner's commit
            lost.append(queue)
            raise IntegrityError("INSERT INTO kombu_queue", {}, Exception("UNIQUE constraint"))
        return real(self, queue)

    monkeypatch.setattr(kombu_sqla.Channel, "_get_or_create", racing)
    declare_task_queue(app)
    assert lost == ["renewals"]
    with create_engine(f"sqlite:///{broker}").connect() as db:
        assert db.execute(text("SELECT name FROM kombu_queue")).scalars().all() == ["renewals"]
