"""The task queue, declared before a worker or the scheduler starts using it."""

from __future__ import annotations

import time

from celery import Celery

DECLARE_ATTEMPTS = 5


def declare_task_queue(app: Celery, *, attempts: int = DECLARE_ATTEMPTS) -> None:
    """Make sure the broker has the task queue, on the embedded broker (``sqla+``) only.

    kombu's SQLAlchemy transport creates a queue's row on first use under a lock that holds
    within one process only: processes starting together on a new broker database race for
    the insert, and the loser's worker stops with an IntegrityError ("Unrecoverable error").
    Declaring the queue here, and again when the insert lost (the row exists by then),
    leaves the worker nothing to race for. The other brokers declare queues idempotently.
    """
    if not str(app.conf.broker_url).startswith("sqla+"):
        return
    from sqlalchemy.exc import IntegrityError, OperationalError

    queue = app.amqp.queues[app.conf.task_default_queue]
    for attempt in range(1, attempts + 1):
        try:
            with app.connection_for_write() as connection:
                queue(connection.default_channel).declare()
            return
        except (IntegrityError, OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
