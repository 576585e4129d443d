"""The worker's pools: tasks that run at once in one process get a database connection and a
FastStar connection each; time limits the threads pool cannot enforce are covered by the
client's timeouts staying below the renewal's lease."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.concurrency import get_implementation

from renewals.config import Settings
from renewals.models.db import DEFAULT_POOL_SIZE, get_engine, tasks_at_once
from renewals.runtime import build_runtime, size_for_tasks_at_once
from renewals.worker.celery_app import tasks_per_process


@pytest.mark.parametrize(
    ("pool", "expected"), [("threads", 16), ("gevent", 16), ("solo", 1), ("prefork", None)]
)
def test_in_process_pools_run_their_whole_concurrency_in_one_process(
    pool: str, expected: int | None
) -> None:
    assert tasks_per_process(get_implementation(pool), 16) == expected


@pytest.fixture
def sized() -> Iterator[None]:
    yield
    size_for_tasks_at_once(None)


def test_the_database_and_faststar_pools_follow_the_tasks_at_once(
    sized: None, postgres_url: str
) -> None:
    settings = Settings(database_url=postgres_url)
    before = build_runtime(settings)
    assert before.engine.pool.size() == DEFAULT_POOL_SIZE  # type: ignore[attr-defined]
    before.faststar.close()

    size_for_tasks_at_once(16)
    assert tasks_at_once() == 16
    runtime = build_runtime(settings)
    try:
        assert runtime.engine is get_engine(postgres_url)
        assert runtime.engine.pool.size() == 16  # type: ignore[attr-defined]
        assert runtime.faststar.max_connections == 16
    finally:
        runtime.faststar.close()


def test_a_charge_call_times_out_well_inside_the_lease_by_default() -> None:
    settings = Settings()
    assert settings.faststar_call_bound_s < settings.lease_seconds / 2
