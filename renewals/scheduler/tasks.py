"""The periodic sweep task; ``beat.py`` schedules it."""

from __future__ import annotations

import structlog

from renewals.models.db import unit_of_work
from renewals.runtime import get_runtime
from renewals.scheduler.beat import SWEEP_TASK
from renewals.scheduler.sweep import SweepResult, sweep
from renewals.worker.celery_app import app
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
    """One sweep, then (after its commit) one message per piece of claimed work."""
    runtime = get_runtime()
    with unit_of_work(runtime.engine) as session:
        result = sweep(session, now=runtime.clock(), settings=runtime.settings)
    for renewal_id in result.charge:
        charge.delay(renewal_id)
    for renewal_id in result.checkout:
        create_checkout.delay(renewal_id)
    for renewal_id in result.action_follow_up:
        action_required_follow_up.delay(renewal_id)
    for renewal_id in result.poll_checkout:
        poll_checkout.delay(renewal_id)
    for renewal_id in result.recheck_unknown:
        recheck_unknown_outcome.delay(renewal_id)
    for inbox_id in result.webhooks:
        process_webhook.delay(inbox_id)
    for message_id in result.deliver:
        deliver_email.delay(message_id)
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
