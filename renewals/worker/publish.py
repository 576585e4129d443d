"""Best-effort hand-off of committed work to a task.

A message is a wake-up hint, never the record: by the time anything is published, the state
change it announces is committed, and the sweep rediscovers whatever was not published
(leases expire, pending rows are claimed again). So a publish that fails must not turn that
committed change into an error for the caller, and a broker that never answers must not hold
the caller (a webhook answer, a sweep, a task) for long.

:func:`publish` therefore sends once, without retry, on a connection whose connect and socket
timeouts stay within :data:`PUBLISH_TIMEOUT_S`, and reports failure as ``False`` with one
warning line. These connections are separate from the worker's own (consumer, beat), which
keep Celery's patient reconnect behaviour.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
from celery import Celery, Task
from kombu import Connection
from kombu.connection import ConnectionPool

log = structlog.get_logger(__name__)

# Upper bound for one publish, connection included. The webhook receiver must answer within
# 2 s whatever the broker does, and the store before it takes milliseconds.
PUBLISH_TIMEOUT_S = 1.0
# Connect and each socket operation get half: a connect that succeeds slowly followed by a
# command that never gets its reply still ends within PUBLISH_TIMEOUT_S.
_STEP_TIMEOUT_S = PUBLISH_TIMEOUT_S / 2
# Connections kept for publishing in each process (webhook threads, a worker's threads).
POOL_LIMIT = 10


def bounded_transport_options(broker_url: str) -> dict[str, Any]:
    """Transport options that keep one publish within the bound, per broker."""
    # max_retries=0: the first failed connect raises instead of kombu's default of retrying
    # until its connect timeout runs out (every transport reads it; sqla drops it).
    options: dict[str, Any] = {"max_retries": 0}
    if broker_url.startswith(("redis", "rediss")):
        # Without socket_timeout a publish on a connection whose peer vanished waits forever.
        options |= {
            "socket_connect_timeout": _STEP_TIMEOUT_S,
            "socket_timeout": _STEP_TIMEOUT_S,
            "retry_on_timeout": False,
        }
    elif broker_url.startswith("sqla+sqlite"):
        # The SQLite broker file may be locked by a worker; wait a little, not sqlite3's 5 s.
        options["connect_args"] = {"timeout": _STEP_TIMEOUT_S}
    return options


_lock = threading.Lock()
# Per app, per process: a forked worker child must not share its parent's sockets.
_pools: weakref.WeakKeyDictionary[Celery, dict[int, ConnectionPool]] = weakref.WeakKeyDictionary()


def _pool(app: Celery) -> ConnectionPool:
    with _lock:
        per_process = _pools.setdefault(app, {})
        pool = per_process.get(os.getpid())
        if pool is None:
            connection: Connection = app.connection_for_write(
                connect_timeout=_STEP_TIMEOUT_S,
                transport_options=bounded_transport_options(_broker_url(app)),
            )
            pool = per_process[os.getpid()] = connection.Pool(limit=POOL_LIMIT)
        return pool


def _broker_url(app: Celery) -> str:
    return str(app.conf.broker_write_url or app.conf.broker_url or "")


def publish(task: Task[Any, Any], *args: int | str, countdown: float | None = None) -> bool:
    """Send ``task(*args)`` once, within :data:`PUBLISH_TIMEOUT_S`; False if it was not sent.
    ``countdown``: run it no sooner than that many seconds from now (seconds only: longer
    waits live in the database).

    Never raises for a broker problem: the caller's state change is already committed, and
    the sweep finds the work again. The failure is one warning line without a traceback, and
    without the broker URL (it may carry a password).
    """
    try:
        connection = _pool(task.app).acquire(block=True, timeout=PUBLISH_TIMEOUT_S)
    except Exception as exc:  # any failure means "not sent"
        _warn(task, args, exc)
        return False
    try:
        # Celery accepts connection= here (as send_task does); its type stubs omit it.
        send: Callable[..., object] = task.apply_async
        send(args, retry=False, connection=connection, countdown=countdown)
    except Exception as exc:  # any failure means "not sent"
        # Drop the half-open state without network I/O; the next acquire reconnects.
        connection.collect()
        _warn(task, args, exc)
        return False
    finally:
        connection.release()
    return True


def _warn(task: Task[Any, Any], args: tuple[int | str, ...], exc: BaseException) -> None:
    log.warning(
        "publish_failed",
        task=task.name,
        args=list(args),
        error=f"{type(exc).__name__}: {_first_line(task, exc)}",
        note="not sent; the sweep picks the work up again",
    )


def _first_line(task: Task[Any, Any], exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else "no detail"
    # Some transports name the broker in their errors; its password must not follow.
    password = urlsplit(_broker_url(task.app)).password
    return line.replace(password, "[secret]") if password else line
