"""Thin tasks: take ids, call one service, enqueue follow-ups after its commit.

Every task is safe to run twice or concurrently: the services re-check state under lock.
Retries of business outcomes are never done with Celery countdowns; they live in the
database (``next_attempt_at``) and the sweep brings them back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.notifications.delivery import deliver
from renewals.runtime import get_runtime
from renewals.services.charging import FollowUps, charge_renewal
from renewals.services.checkout import ensure_checkout_session, follow_up_action_required
from renewals.services.reconciliation import (
    poll_checkout_session,
    process_inbox_event,
    recheck_unknown,
)
from renewals.worker.celery_app import app
from renewals.worker.publish import publish

log = structlog.get_logger(__name__)


class RenewalService(Protocol):
    """The shape of every renewal service a task runs (mypy checks each one against it)."""

    def __call__(
        self,
        engine: Engine,
        client: FastStarClient,
        renewal_id: int,
        /,
        *,
        clock: Callable[[], datetime],
        settings: Settings,
    ) -> FollowUps: ...


def enqueue_follow_ups(follow: FollowUps) -> None:
    for renewal_id in follow.checkout_renewal_ids:
        publish(create_checkout, renewal_id)
    for message_id in follow.deliver_message_ids:
        publish(deliver_email, message_id)


def _run_for_renewal(task: str, service: RenewalService, renewal_id: int) -> None:
    runtime = get_runtime()
    with structlog.contextvars.bound_contextvars(task=task, renewal_id=renewal_id):
        enqueue_follow_ups(
            service(
                runtime.engine,
                runtime.faststar,
                renewal_id,
                clock=runtime.clock,
                settings=runtime.settings,
            )
        )


@app.task(name="renewals.charge_renewal")
def charge(renewal_id: int) -> None:
    _run_for_renewal("charge", charge_renewal, renewal_id)


@app.task(name="renewals.create_checkout")
def create_checkout(renewal_id: int) -> None:
    _run_for_renewal("checkout", ensure_checkout_session, renewal_id)


@app.task(name="renewals.action_required_follow_up")
def action_required_follow_up(renewal_id: int) -> None:
    _run_for_renewal("action_follow_up", follow_up_action_required, renewal_id)


@app.task(name="renewals.poll_checkout")
def poll_checkout(renewal_id: int) -> None:
    _run_for_renewal("poll_checkout", poll_checkout_session, renewal_id)


@app.task(name="renewals.recheck_unknown")
def recheck_unknown_outcome(renewal_id: int) -> None:
    _run_for_renewal("recheck_unknown", recheck_unknown, renewal_id)


@app.task(name="renewals.process_webhook")
def process_webhook(inbox_id: int) -> None:
    runtime = get_runtime()
    with structlog.contextvars.bound_contextvars(task="process_webhook", inbox_id=inbox_id):
        enqueue_follow_ups(
            process_inbox_event(
                runtime.engine, inbox_id, clock=runtime.clock, settings=runtime.settings
            )
        )


@app.task(name="renewals.deliver_email")
def deliver_email(message_id: int) -> None:
    runtime = get_runtime()
    with structlog.contextvars.bound_contextvars(task="deliver_email", message_id=message_id):
        deliver(
            runtime.engine,
            message_id,
            clock=runtime.clock,
            settings=runtime.settings,
            sender=runtime.sender,
        )
