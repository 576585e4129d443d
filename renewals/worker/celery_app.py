"""The Celery application, configured for money.

Messages are wake-up hints, not the record: the database is the queue of record and the
sweep rediscovers anything a lost or duplicated message would have left behind. The settings
below keep the broker's at-least-once delivery from turning into a double charge, and keep
long waits out of the broker.

The pool. Production runs ``renewals worker --pool threads --concurrency 16`` (Procfile): a
charge is a few milliseconds of Python around a FastStar call that waits on the network, so
threads in one process do the same work as a prefork pool in a tenth of the memory (measured
at 16: ~25 renewals/s in ~105 MB against ~29/s in ~1.2 GB). ``gevent`` works too (the CLI
monkey-patches before anything else is imported, see ``renewals.launch``); ``prefork`` stays
available. Whatever the pool, every task is safe to run twice, and the settings below hold:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only once
  its task ran. With threads or gevent all tasks share the worker's one process, so "the
  worker was lost" means the whole process died and every unacknowledged message is
  redelivered by the broker; with prefork it also covers one child being killed.
* ``worker_prefetch_multiplier = 1``: the worker reserves at most ``concurrency`` messages,
  one per thread, so a crash strands no more than were running.
* Time limits: prefork enforces both (it kills the child), gevent the hard one (a Timeout
  raised in the greenlet); **the threads pool enforces neither** (a thread cannot be
  killed). A hung charge call is bounded there by the FastStar client's timeouts
  (``Settings.faststar_call_bound_s``: 36 s by default against a 300 s lease; the worker
  warns at start when it is not below the lease). A renewal whose worker stalls anyway is
  still ``charging`` when its lease expires: the sweep marks it ``unknown`` and the janitor
  asks FastStar (I3), so nothing is charged twice or guessed. The limits stay set for the
  pools that honour them.

The database pool and the FastStar client's connection pool are sized to the tasks that run
at once in one process (:func:`_size_pools`).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import celeryd_after_setup, setup_logging, worker_process_init

from renewals.config import TASK_TIME_LIMIT_S, Settings, get_settings
from renewals.worker.names import TASK_QUEUE

# The broker redelivers an unacknowledged message after RENEWALS_BROKER_VISIBILITY_TIMEOUT
# (3600 s). Every task limit below is far shorter (production refuses a shorter timeout), so
# a message is only redelivered when its worker really died.
TASK_SOFT_TIME_LIMIT_S = 60
# kombu's default sweep for expired unacknowledged messages: every 10 s, scanning on every
# 10th sweep.
KOMBU_RESTORE_INTERVAL_S = 10


def _transport_options(broker_url: str, visibility_timeout: int) -> dict[str, Any]:
    if broker_url.startswith(("redis", "rediss")):
        options: dict[str, Any] = {"visibility_timeout": visibility_timeout}
        if visibility_timeout < KOMBU_RESTORE_INTERVAL_S * 10:
            # A short timeout (fault tests) is only honoured if expired messages are looked
            # for as often; kombu's default looks every 100 s.
            options |= {
                "unacked_restore_interval": max(1, visibility_timeout // 2),
                "unacked_restore_throttle": 1,
            }
        return options
    # kombu's SQLAlchemy transport hands every option to create_engine(), and has no
    # visibility timeout: a message taken by a worker that dies is gone, which the sweep's
    # leases make up for.
    return {}


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "renewals",
        broker=settings.broker_url,
        include=["renewals.worker.tasks", "renewals.worker.integration_tasks"],
    )
    app.conf.update(
        # Acknowledge after the task ran, so a worker that dies mid-task leaves the message
        # to be redelivered; the task itself is idempotent (state checked under lock).
        task_acks_late=True,
        # ... and when the process running it is killed (OOM, kill -9: a prefork child, or
        # the whole worker under threads/gevent), reject so it is redelivered rather than
        # acknowledged as if it had finished.
        task_reject_on_worker_lost=True,
        # Reserve one message per slot of the pool (per thread): a crash then strands only
        # what was running, and long charges do not hold other work hostage in a busy
        # worker's buffer.
        worker_prefetch_multiplier=1,
        # Limits far below the visibility timeout: a hung task is killed (and its renewal
        # rediscovered by the sweep) long before the broker hands its message to someone else.
        # Enforced by prefork (and the hard one by gevent); not by threads, where the FastStar
        # client's timeouts and the renewal's lease bound a hung call (module docstring).
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_TIME_LIMIT_S,
        broker_transport_options=_transport_options(
            settings.broker_url, settings.broker_visibility_timeout
        ),
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


# Pools that run their whole concurrency inside the worker's one process.
IN_PROCESS_POOLS = (
    "celery.concurrency.thread",
    "celery.concurrency.gevent",
    "celery.concurrency.eventlet",
)


def tasks_per_process(pool_cls: Any, concurrency: int) -> int | None:
    """How many tasks run at once in one process of this pool: the concurrency for threads
    and green threads, None (the defaults) for prefork, whose children run one each."""
    module = getattr(pool_cls, "__module__", str(pool_cls))
    if module in IN_PROCESS_POOLS:
        return max(1, int(concurrency))
    if module == "celery.concurrency.solo":
        return 1
    return None


@celeryd_after_setup.connect
def _size_pools(instance: Any, **_: Any) -> None:
    # Sent once the pool class and concurrency are known, before the pool and the consumer
    # start: no task has built the runtime yet.
    from renewals.runtime import size_for_tasks_at_once

    at_once = tasks_per_process(instance.pool_cls, instance.concurrency)
    size_for_tasks_at_once(at_once)
    log = structlog.get_logger(__name__)
    log.info("worker_pools_sized", tasks_at_once=at_once)
    settings = get_settings()
    if settings.faststar_call_bound_s >= settings.lease_seconds:
        # Not refused: tests shorten the lease on purpose. In production a call that can
        # outlast the lease turns a slow answer into an "unknown" for the janitor.
        log.warning(
            "faststar_timeouts_exceed_the_lease",
            call_bound_s=settings.faststar_call_bound_s,
            lease_seconds=settings.lease_seconds,
        )
