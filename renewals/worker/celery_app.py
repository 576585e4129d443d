"""The Celery application, configured for money.

Messages are wake-up hints, not the record: the database is the queue of record and the
sweep rediscovers anything a lost or duplicated message would have left behind. The settings
below keep the broker's at-least-once delivery from turning into a double charge, and keep
long waits out of the broker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from renewals.config import Settings, get_settings
from renewals.worker.names import TASK_QUEUE

# The broker redelivers an unacknowledged message after this long. Every task limit below is
# far shorter, so a message is only redelivered when its worker really died.
VISIBILITY_TIMEOUT_S = 3600
TASK_SOFT_TIME_LIMIT_S = 60
TASK_TIME_LIMIT_S = 90


def _transport_options(broker_url: str) -> dict[str, Any]:
    if broker_url.startswith(("redis", "rediss")):
        return {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    # kombu's SQLAlchemy transport hands every option to create_engine(), and has no
    # visibility timeout: a message taken by a worker that dies is gone, which the sweep's
    # leases make up for.
    return {}


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "renewals",
        broker=settings.broker_url,
        include=["renewals.worker.tasks"],
    )
    app.conf.update(
        # Acknowledge after the task ran, so a worker that dies mid-task leaves the message
        # to be redelivered; the task itself is idempotent (state checked under lock).
        task_acks_late=True,
        # ... and when the child process is killed (OOM, kill -9), reject so it is redelivered
        # rather than acknowledged as if it had finished.
        task_reject_on_worker_lost=True,
        # Reserve one message at a time: a crash then strands one message, not a batch, and
        # long charges do not hold other work hostage in a busy worker's buffer.
        worker_prefetch_multiplier=1,
        # Limits far below the visibility timeout: a hung task is killed (and its renewal
        # rediscovered by the sweep) long before the broker hands its message to someone else.
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_TIME_LIMIT_S,
        broker_transport_options=_transport_options(settings.broker_url),
        # JSON only: task arguments are ids, and pickle would execute whatever the broker holds.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Nobody waits on task results; outcomes live in the database.
        task_ignore_result=True,
        result_backend=None,
        # All instants are UTC; beat intervals are plain intervals, not wall-clock crontabs.
        enable_utc=True,
        timezone="UTC",
        task_default_queue=TASK_QUEUE,
        broker_connection_retry_on_startup=True,
        # Our logging setup (structlog + redaction) stays in charge.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Long delays (dunning days, reminders) live in the renewals' wake_at column read by
        # the sweep, never in countdown/eta: those would outlive the visibility timeout. The
        # beat schedule itself is the scheduler's (renewals.scheduler.beat).
    )
    return app


app = make_celery(get_settings())


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    from renewals.logs import configure_logging

    configure_logging(get_settings())


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections.
    from renewals.models.db import dispose_engines

    dispose_engines()
