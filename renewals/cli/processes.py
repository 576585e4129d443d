"""The long-running processes: sandbox, worker, scheduler."""

from __future__ import annotations

from pathlib import Path

import click

from renewals.cli.root import main, settings_or_exit
from renewals.metrics.setup import prepare as prepare_metrics


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file that keeps the sandbox's state across restarts.",
)
def sandbox(host: str, port: int, state: Path | None) -> None:
    """Run the local FastStar sandbox (its conventions: docs/faststar.md, Part B)."""
    from renewals.sandbox.server import serve

    settings_or_exit()
    serve(host=host, port=port, state_path=state)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    prepare_metrics(settings_or_exit())
    from renewals.worker.celery_app import app

    app.worker_main(["worker", "--loglevel", "INFO", *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Run Celery beat, which starts the sweep every RENEWALS_SWEEP_INTERVAL seconds."""
    settings = settings_or_exit()
    prepare_metrics(settings)
    from renewals.scheduler.beat import beat_schedule
    from renewals.worker.celery_app import app
    from renewals.worker.publish import publish
    from renewals.worker.tasks import sweep_task

    app.conf.beat_schedule = beat_schedule(settings)
    # Beat's first tick comes a full interval after it starts: sweep once now, so work that
    # fell due while the scheduler was down is not left waiting. Best effort, like every
    # publish: a broker that is not up yet leaves it to the first tick.
    publish(sweep_task)
    schedule = Path("var") / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", "INFO", "--schedule", str(schedule), *ctx.args])
