"""``renewals webhooks`` (the receiver) and ``renewals reconcile`` (operator resolution,
a command over the task queue)."""

from __future__ import annotations

import click

from renewals.cli.commands import send, sending_options
from renewals.cli.root import main, settings_or_exit
from renewals.domain.commands import CommandName
from renewals.models.db import get_engine


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def webhooks(host: str, port: int) -> None:
    """Serve the FastStar webhook endpoint (POST /webhooks/faststar) and GET /metrics."""
    import uvicorn

    from renewals.metrics.setup import prepare

    settings = settings_or_exit()
    prepare(settings)  # before the imports below create any metric
    from renewals.domain.work import Work
    from renewals.runtime import utcnow
    from renewals.webhooks.app import WebhookApp
    from renewals.webhooks.metrics_endpoint import with_metrics
    from renewals.worker.publish import publish
    from renewals.worker.tasks import TASKS

    def hand_to_worker(inbox_id: int) -> None:
        publish(TASKS[Work.WEBHOOK], inbox_id)  # best effort: the sweep finds what is not sent

    engine = get_engine(settings.database_url)
    app = WebhookApp(engine=engine, settings=settings, on_stored=hand_to_worker)
    served = with_metrics(app, engine, utcnow)
    uvicorn.run(served, host=host, port=port, access_log=False, log_config=None)


@main.command()
@click.argument("renewal_id", type=int)
@click.option("--paid", "payment_intent_id", default=None, help="It did charge: the pi_ id.")
@click.option("--not-charged", is_flag=True, help="It charged nothing: try again, new key.")
@click.option("--reason", default=None, help="Why (required with --not-charged).")
@sending_options(wait_default=True)
def reconcile(
    renewal_id: int,
    payment_intent_id: str | None,
    not_charged: bool,
    reason: str | None,
    actor: str | None,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> None:
    """Settle a renewal whose charge outcome is unknown (a queued command; waits for its
    outcome unless --no-wait)."""
    if (payment_intent_id is None) == (not not_charged):
        raise click.UsageError("give exactly one of --paid pi_… or --not-charged")
    if payment_intent_id is not None and not payment_intent_id.startswith("pi_"):
        raise click.BadParameter("a FastStar payment id starts with pi_", param_hint="--paid")
    if not_charged and not reason:
        raise click.UsageError("--not-charged needs --reason")
    send(
        CommandName.RECONCILE,
        {
            "renewal_id": renewal_id,
            "paid": payment_intent_id,
            "not_charged": not_charged or None,
            "reason": reason,
        },
        actor=actor,
        wait=wait,
        timeout=timeout,
        dry=dry_run,
    )
