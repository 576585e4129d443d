"""The periodic sweep task; ``beat.py`` schedules it."""

from __future__ import annotations

import structlog

from renewals.models.db import unit_of_work
from renewals.runtime import get_runtime
from renewals.scheduler.beat import SWEEP_TASK
from renewals.scheduler.sweep import SweepResult, sweep
from renewals.worker.celery_app import app
from renewals.worker.publish import publish
from renewals.worker.tasks import (
    action_required_follow_up,
    charge,
    create_checkout,
    deliver_email,
    poll_checkout,
    process_webhook,
    recheck_unknown_outcome,
)

log = structlog.get_logger(__name__)


def run_sweep() -> SweepResult:
    """One sweep, then (after its commit) one message per piece of claimed work.

    A message that cannot be sent is left to a later sweep: the work stays leased in the
    database and is claimed again when the lease expires."""
    runtime = get_runtime()
    with unit_of_work(runtime.engine) as session:
        result = sweep(session, now=runtime.clock(), settings=runtime.settings)
    for renewal_id in result.charge:
        publish(charge, renewal_id)
    for renewal_id in result.checkout:
        publish(create_checkout, renewal_id)
    for renewal_id in result.action_follow_up:
        publish(action_required_follow_up, renewal_id)
    for renewal_id in result.poll_checkout:
        publish(poll_checkout, renewal_id)
    for renewal_id in result.recheck_unknown:
        publish(recheck_unknown_outcome, renewal_id)
    for inbox_id in result.webhooks:
        publish(process_webhook, inbox_id)
    for message_id in result.deliver:
        publish(deliver_email, message_id)
    if result.charge or result.became_unknown or result.materialised:
        log.info(
            "sweep",
            materialised=len(result.materialised),
            claimed=len(result.charge),
            became_unknown=len(result.became_unknown),
            checkouts=len(result.checkout),
            emails=len(result.deliver),
        )
    return result


@app.task(name=SWEEP_TASK)
def sweep_task() -> None:
    run_sweep()
