"""Work a prefork worker's main process does once, before it forks its pool, so that each
child does not do it again on its first task: importing the modules that are otherwise
imported lazily on first use (the PostgreSQL driver, httpx's transport, the metrics'
instruments) and compiling the email templates. Forked children share these pages.

Nothing here opens a connection or a file that a child could inherit: the engine, the
FastStar client and the mail sender are still built per process (``renewals.runtime``).
"""

from __future__ import annotations

import importlib
from contextlib import suppress
from typing import Any

from celery.signals import worker_init

# Imported lazily by their users: on first connect, first client, first metric.
LAZY_MODULES = (
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
    "httpcore",
    "renewals.metrics.instruments",
)


def preload() -> None:
    for name in LAZY_MODULES:
        with suppress(ImportError):  # an optional driver that is not installed
            importlib.import_module(name)
    from renewals.notifications.rendering import compile_templates

    compile_templates()


@worker_init.connect
def _preload_before_fork(**_: Any) -> None:
    preload()
