"""A task whose transaction found SQLite's write lock taken for its whole busy timeout
("database is locked", nothing changed) is retried a few seconds later instead of failing;
any other database error still fails the task. In-process, with Celery's eager apply."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from renewals.domain.work import Work
from renewals.services.followups import FollowUps
from renewals.worker import tasks


class _Flaky:
    """A service that meets ``error`` ``times`` times, then hands on one email."""

    def __init__(self, error: str, times: int) -> None:
        self.error, self.times, self.calls = error, times, 0

    def __call__(self, deps: Any, item_id: int) -> FollowUps:
        self.calls += 1
        if self.calls <= self.times:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception(self.error))
        follow = FollowUps()
        follow.add(Work.DELIVER, item_id)
        return follow


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[FollowUps]:
    sent: list[FollowUps] = []
    monkeypatch.setattr(tasks, "get_runtime", object)
    monkeypatch.setattr(tasks, "enqueue", sent.append)
    return sent


def test_a_charge_task_that_finds_the_database_locked_is_retried(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[FollowUps]
) -> None:
    flaky = _Flaky("database is locked", times=2)
    monkeypatch.setattr(tasks, "SERVICES", {**tasks.SERVICES, Work.CHARGE: flaky})
    tasks.TASKS[Work.CHARGE].apply(args=[7])
    assert flaky.calls == 3
    assert [f.work for f in enqueued] == [[(Work.DELIVER, 7)]]


def test_a_task_still_locked_after_every_retry_fails(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[FollowUps]
) -> None:
    flaky = _Flaky("database is locked", times=100)
    monkeypatch.setattr(tasks, "SERVICES", {**tasks.SERVICES, Work.CHARGE: flaky})
    tasks.TASKS[Work.CHARGE].apply(args=[7])
    assert flaky.calls == len(tasks.LOCKED_RETRY_DELAYS_S) + 1
    assert enqueued == []


def test_any_other_database_error_fails_the_task_at_once(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[FollowUps]
) -> None:
    flaky = _Flaky("no such table: renewals", times=1)
    monkeypatch.setattr(tasks, "SERVICES", {**tasks.SERVICES, Work.CHARGE: flaky})
    result = tasks.TASKS[Work.CHARGE].apply(args=[7])
    assert flaky.calls == 1
    assert result.state == "FAILURE"
    assert enqueued == []
