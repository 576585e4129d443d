"""Waking the batch delivery: one batch message per window per process, published when the
window's timer fires (so after every email handed on meanwhile), whatever the number of
emails; a message the broker did not take leaves the next email to try again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from renewals.domain.work import Work
from renewals.services.followups import FollowUps
from renewals.worker import tasks
from renewals.worker.mail_hints import DeliveryHints
from renewals.worker.names import DELIVER_BATCH_TASK, TASK_NAMES


class Timers:
    """Timers that fire when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay_s: float, fire: Callable[[], None]) -> None:
        self.waiting.append((delay_s, fire))

    def fire(self) -> None:
        _, fire = self.waiting.pop(0)
        fire()


def test_one_message_per_window_published_when_its_timer_fires() -> None:
    sent: list[str] = []
    timers = Timers()
    hints = DeliveryHints(lambda: sent.append("batch") or True, window_s=1.0, schedule=timers)
    assert hints.hint()
    assert not hints.hint()  # the coming publish is after this email's commit
    assert sent == [] and [delay for delay, _ in timers.waiting] == [1.0]
    timers.fire()
    assert sent == ["batch"]
    assert hints.hint()  # an email after the publish: the next window
    timers.fire()
    assert sent == ["batch", "batch"]


def test_a_message_not_taken_leaves_the_next_email_to_try_again() -> None:
    answers = [False, True]
    timers = Timers()
    hints = DeliveryHints(lambda: answers.pop(0), schedule=timers)
    hints.hint()
    timers.fire()
    assert hints.hint()
    timers.fire()
    assert answers == []


def test_the_default_timer_publishes_in_a_thread() -> None:
    import threading

    published = threading.Event()
    hints = DeliveryHints(lambda: published.set() or True, window_s=0.01)
    assert hints.hint()
    assert published.wait(10)


def test_enqueue_publishes_work_per_id_and_one_batch_message_for_all_emails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[tuple[str, tuple[Any, ...]]] = []

    def publish(task: Any, *args: Any) -> bool:
        published.append((task.name, args))
        return True

    timers = Timers()
    monkeypatch.setattr(tasks, "publish", publish)
    monkeypatch.setattr(
        tasks,
        "delivery_hints",
        DeliveryHints(lambda: tasks.publish(tasks.deliver_batch_task), schedule=timers),
    )
    follow = FollowUps()
    for message_id in (7, 8, 9):
        follow.add(Work.DELIVER, message_id)
    follow.add(Work.CHARGE, 3)
    tasks.enqueue(follow)
    tasks.enqueue(follow)  # within the window: only the charge again
    timers.fire()
    assert published == [
        (TASK_NAMES[Work.CHARGE], (3,)),
        (TASK_NAMES[Work.CHARGE], (3,)),
        (DELIVER_BATCH_TASK, ()),
    ]
