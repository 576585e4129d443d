"""Engines and units of work.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every transaction
starts with ``BEGIN IMMEDIATE``: SQLite allows one writer, and taking the write lock up front
turns a would-be ``database is locked`` failure halfway through a transaction into a short
wait at its start. That also makes each SQLite transaction the "lock" that PostgreSQL gets
from ``SELECT … FOR UPDATE``.

Engines are created lazily per process, so a forked Celery child never shares its parent's
connections.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


def _sqlite_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return url


# Connections an engine keeps when nothing says how many tasks run at once in the process
# (the CLI, the web process, a prefork child running one task at a time).
DEFAULT_POOL_SIZE = 5
# Beyond one connection per concurrent task: the few moments a task's code holds a second
# one, and whatever runs beside the tasks (the drain's chain, a heartbeat).
POOL_HEADROOM = 5

_sizing: dict[str, int | None] = {"tasks_at_once": None}


def expect_tasks_at_once(count: int | None) -> None:
    """Size this process's engines for ``count`` tasks running at once (a threads or gevent
    worker pool runs its whole concurrency in one process); engines made before are
    disposed of so the next use builds one of the right size."""
    _sizing["tasks_at_once"] = count
    dispose_engines()


def tasks_at_once() -> int | None:
    return _sizing["tasks_at_once"]


def create_db_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """A new engine for ``url`` with the per-dialect settings described above; ``pool_size``
    (PostgreSQL) is how many connections it keeps, one per task that may run at once."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            _sqlite_url(url),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs a round trip per transaction on the renewal hot path. A
    # connection the server dropped fails its first statement instead; the task fails before
    # anything was sent and the sweep hands the work out again. Recycling keeps connections
    # younger than common idle timeouts.
    return create_engine(
        url,
        pool_size=pool_size or DEFAULT_POOL_SIZE,
        max_overflow=POOL_HEADROOM,
        pool_recycle=1800,
    )


def get_engine(url: str) -> Engine:
    """The engine for ``url`` in this process (re-created after a fork)."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_db_engine(url, pool_size=tasks_at_once())
        return engine


def dispose_engines() -> None:
    """Forget every engine (after a fork the parent's pool must not be touched)."""
    with _lock:
        for (pid, _), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
        _engines.clear()


_factories: dict[Engine, sessionmaker[Session]] = {}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(engine, expire_on_commit=False, autoflush=False)
    return factory


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends cleanly, rolled back otherwise."""
    with session_factory(engine)() as session, session.begin():
        yield session


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
