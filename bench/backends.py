"""Where a run keeps its data: PostgreSQL + Redis, or the embedded default (SQLite files and
kombu's SQLAlchemy broker under the processes' ``./var``).

PostgreSQL: a database of our own per run, dropped afterwards. Redis: a database number
claimed the way the tests claim one (``tests.support.redis_db``), so a bench and a test run
on one machine never share a broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support.redis_db import claim_redis_db, flush_keeping_claim

POSTGRES_URL = os.environ.get(
    "RENEWALS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RENEWALS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

POSTGRES = "postgres+redis"
EMBEDDED = "sqlite+sqla-broker"


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    env: dict[str, str]
    """RENEWALS_* variables the processes need for it (none for the embedded default)."""
    broker_url: str | None = None
    """None: the processes' default (kombu's SQLAlchemy transport on ./var/broker.db)."""


@contextmanager
def postgres_database(admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """A fresh database's URL, dropped (with its connections) afterwards."""
    name = f"renewals_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def backend(name: str, workdir: Path) -> Iterator[Backend]:
    """``name`` is POSTGRES or EMBEDDED; ``workdir`` is the processes' working directory."""
    if name == EMBEDDED:
        # The processes' default: sqlite:///var/renewals.db relative to their directory.
        yield Backend(name, f"sqlite:///{workdir / 'var' / 'renewals.db'}", {})
        return
    claim = claim_redis_db(REDIS_URL)
    try:
        with postgres_database() as database_url:
            yield Backend(
                name,
                database_url,
                {"RENEWALS_DATABASE_URL": database_url, "RENEWALS_BROKER_URL": claim.url},
                claim.url,
            )
    finally:
        flush_keeping_claim(claim.url)
        claim.release()
