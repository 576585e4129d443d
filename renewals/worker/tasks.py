"""Thin tasks: take an id, run the service of that kind of work, enqueue what it hands on
after its commit.

One task per kind of work (stable names in :mod:`renewals.worker.names`), built
from the one table in :mod:`renewals.services.work`, plus the sweep that beat starts and the
drain, its follow-on claim chain (:mod:`renewals.services.drain`), plus one task per
operator command (built from :mod:`renewals.services.commands`' table). Every
task is safe to run twice or concurrently: the services re-check state under lock.
Retries of business outcomes are never done with Celery countdowns; they live in the
database (each renewal's ``wake_at``) and the sweep brings them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import structlog
from celery import Task
from sqlalchemy.exc import OperationalError

from renewals import metrics, transitions
from renewals.crashpoints import crash_point
from renewals.domain.commands import CommandName
from renewals.domain.work import Work
from renewals.models.db import unit_of_work
from renewals.notifications.batch import Batch
from renewals.runtime import get_runtime
from renewals.services.commands import run_command
from renewals.services.drain import Drained, drain
from renewals.services.followups import FollowUps
from renewals.services.mail import deliver_due_emails
from renewals.services.sweep import sweep_once
from renewals.services.work import SERVICES
from renewals.worker import preload as _preload  # noqa: F401 (connects the signal)
from renewals.worker.celery_app import app
from renewals.worker.mail_hints import DeliveryHints
from renewals.worker.names import (
    COMMAND_TASK_NAMES,
    DELIVER_BATCH_TASK,
    SWEEP_DRAIN_TASK,
    SWEEP_TASK,
    TASK_NAMES,
)
from renewals.worker.publish import publish

log = structlog.get_logger(__name__)


def enqueue(follow: FollowUps) -> None:
    """One message per piece of work, except emails, which wake the batch delivery (at
    most one message per window per process, see :mod:`renewals.worker.mail_hints`); call
    only after the transaction has committed. Best effort: what the broker does not take,
    the sweep finds again once its lease expires."""
    emails = False
    for kind, item_id in follow.work:
        if kind is Work.DELIVER:
            emails = True
        else:
            publish(TASKS[kind], item_id)
    if emails:
        delivery_hints.hint()


# SQLite's one write lock: a transaction that waited its whole busy timeout for it fails
# with "database is locked" before it changed anything (every transaction takes the lock at
# BEGIN IMMEDIATE). The work is as safe to run again as any redelivery, so the task is
# retried a few seconds later instead of failing and leaving the work to its lease.
LOCKED_RETRY_DELAYS_S = (1, 2, 5, 10, 20)


def database_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def _task_for(kind: Work) -> Task:  # type: ignore[type-arg]
    def run(task: Task, item_id: int) -> None:  # type: ignore[type-arg]
        runtime = get_runtime()
        with structlog.contextvars.bound_contextvars(task=str(kind), id=item_id):
            try:
                follow = SERVICES[kind](runtime, item_id)
                crash_point("result_committed_unacked")
            except OperationalError as exc:
                if not database_locked(exc) or task.request.retries >= len(LOCKED_RETRY_DELAYS_S):
                    raise
                delay = LOCKED_RETRY_DELAYS_S[task.request.retries]
                log.warning("database_locked_retry", retry_in_s=delay, error="database is locked")
                raise task.retry(countdown=delay, max_retries=len(LOCKED_RETRY_DELAYS_S)) from None
            enqueue(follow)

    run.__name__ = run.__qualname__ = f"run_{kind}"
    return app.task(name=TASK_NAMES[kind], bind=True)(run)


TASKS: Mapping[Work, Task] = MappingProxyType({kind: _task_for(kind) for kind in Work})  # type: ignore[type-arg]


def _command_task(name: CommandName) -> Task:  # type: ignore[type-arg]
    def run(command_id: int) -> None:
        runtime = get_runtime()
        enqueue(
            run_command(
                runtime.settings,
                runtime.engine,
                runtime.faststar,
                runtime.clock,
                command_id,
                expected=name.value,
            )
        )

    run.__name__ = run.__qualname__ = f"run_{name}"
    return app.task(name=COMMAND_TASK_NAMES[name])(run)


COMMAND_TASKS: Mapping[CommandName, Task] = MappingProxyType(  # type: ignore[type-arg]
    {name: _command_task(name) for name in CommandName}
)


def run_sweep() -> FollowUps:
    """One sweep, then (after its commit) one message per piece of work it claimed, the
    drain if a batch ran full (the rest is claimed now, not at the next beat), and one message
    per operator command whose message was lost or whose worker vanished."""
    runtime = get_runtime()
    with unit_of_work(runtime.engine) as session:
        swept = sweep_once(session, now=runtime.clock(), settings=runtime.settings)
    if swept.claimed:
        crash_point("after_claim_commit")
    enqueue(swept.follow)
    metrics.count_claimed(kind for kind, _ in swept.follow.work)
    metrics.sweep_ran()
    if swept.follow.work:
        log.info("sweep", **_counts(swept.follow))
    if swept.more_due:
        # A chain already running keeps its lease; this message then ends at once.
        publish(sweep_drain_task)
    with unit_of_work(runtime.engine) as session:
        lost = transitions.lost_commands(
            session, now=runtime.clock(), lease_seconds=runtime.settings.lease_seconds
        )
    for command_id, name in lost:
        publish(COMMAND_TASKS[CommandName(name)], command_id)
    return swept.follow


def run_drain(holder: str | None = None) -> Drained:
    """The drain as ``holder`` (a new chain when None); when it hands on, the next message
    of the chain carries the holder, and so the lease."""
    runtime = get_runtime()

    def hand_out(follow: FollowUps) -> None:
        enqueue(follow)
        metrics.count_claimed(kind for kind, _ in follow.work)

    done = drain(
        runtime.engine,
        settings=runtime.settings,
        clock=runtime.clock,
        hand_out=hand_out,
        holder=holder,
    )
    if done.hand_on:
        publish(sweep_drain_task, done.holder)
    if done.steps:
        log.info(
            "sweep_drain",
            outcome=str(done.outcome),
            steps=done.steps,
            materialised=done.materialised,
            claimed=done.claimed,
        )
    return done


def _counts(follow: FollowUps) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, _ in follow.work:
        counts[kind.value] = counts.get(kind.value, 0) + 1
    return counts


@app.task(name=SWEEP_TASK)
def sweep_task() -> None:
    run_sweep()


@app.task(name=SWEEP_DRAIN_TASK)
def sweep_drain_task(holder: str | None = None) -> None:
    run_drain(holder)


def run_delivery_batch() -> Batch:
    """One batch of due emails; a full batch hands on to the next at once."""
    done = deliver_due_emails(get_runtime())
    if done.full:
        publish(deliver_batch_task)
    return done


@app.task(name=DELIVER_BATCH_TASK)
def deliver_batch_task() -> None:
    run_delivery_batch()


delivery_hints = DeliveryHints(lambda: publish(deliver_batch_task))
