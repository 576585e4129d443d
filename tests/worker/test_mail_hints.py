"""Waking the batch delivery: at most one delayed batch message per window per process,
whatever the number of emails handed on; a message the broker did not take leaves the
next email to try again."""

from __future__ import annotations

from typing import Any

import pytest

from renewals.domain.work import Work
from renewals.services.followups import FollowUps
from renewals.worker import tasks
from renewals.worker.mail_hints import DeliveryHints
from renewals.worker.names import DELIVER_BATCH_TASK, TASK_NAMES


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_delayed_message_per_window() -> None:
    sent: list[float] = []
    clock = Clock()
    hints = DeliveryHints(lambda delay: sent.append(delay) or True, window_s=1.0, clock=clock)
    assert hints.hint()
    clock.now += 0.5
    assert not hints.hint()  # the message sent above runs after this email's commit
    clock.now += 0.5
    assert hints.hint()  # a new window
    assert sent == [1.0, 1.0]  # each delayed by the window


def test_a_message_not_taken_lets_the_next_email_try_again() -> None:
    answers = [False, True]
    hints = DeliveryHints(lambda _: answers.pop(0), window_s=1.0, clock=Clock())
    assert not hints.hint()
    assert hints.hint()
    assert answers == []


def test_enqueue_publishes_work_per_id_and_one_batch_message_for_all_emails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[tuple[str, tuple[Any, ...], float | None]] = []

    def publish(task: Any, *args: Any, countdown: float | None = None) -> bool:
        published.append((task.name, args, countdown))
        return True

    monkeypatch.setattr(tasks, "publish", publish)
    monkeypatch.setattr(
        tasks,
        "delivery_hints",
        DeliveryHints(
            lambda delay: tasks.publish(tasks.deliver_batch_task, countdown=delay), clock=Clock()
        ),
    )
    follow = FollowUps()
    for message_id in (7, 8, 9):
        follow.add(Work.DELIVER, message_id)
    follow.add(Work.CHARGE, 3)
    tasks.enqueue(follow)
    tasks.enqueue(follow)  # within the window: only the charge again
    assert published == [
        (TASK_NAMES[Work.CHARGE], (3,), None),
        (DELIVER_BATCH_TASK, (), 1.0),
        (TASK_NAMES[Work.CHARGE], (3,), None),
    ]
