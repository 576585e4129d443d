"""The ``renewals`` command's entry point (and ``python -m renewals``'s).

``renewals worker --pool gevent`` needs gevent's monkey-patching before anything else is
imported: a socket, lock or SSL module imported unpatched blocks the whole process, and the
worker reads no message at all. Celery's own ``celery`` command does this in its entry point
(``celery.maybe_patch_concurrency``); ours does it here, before the CLI (and with it
SQLAlchemy, psycopg, httpx, redis) is imported.
"""

from __future__ import annotations

import sys


def main() -> None:
    if "worker" in sys.argv[1:]:
        from celery import maybe_patch_concurrency

        # Reads --pool/-P from the arguments; patches for gevent and eventlet only.
        maybe_patch_concurrency(sys.argv)
    from renewals.cli import main as cli

    cli()
