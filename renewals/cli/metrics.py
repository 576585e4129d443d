"""``renewals metrics``: GET /metrics alone, for a host that runs no web process."""

from __future__ import annotations

import click

from renewals.cli.root import main, settings_or_exit
from renewals.models.db import get_engine


@main.command("metrics")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9464, show_default=True, type=click.IntRange(0, 65535))
def metrics_command(host: str, port: int) -> None:
    """Serve GET /metrics: this host's process counters and the database's backlogs."""
    import uvicorn

    from renewals.metrics.setup import prepare

    settings = settings_or_exit()
    prepare(settings)
    from renewals.runtime import utcnow
    from renewals.webhooks.metrics_endpoint import with_metrics

    app = with_metrics(None, get_engine(settings.database_url), utcnow)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)
