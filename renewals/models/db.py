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


def create_db_engine(url: str) -> Engine:
    """A new engine for ``url`` with the per-dialect settings described above."""
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
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800)


def get_engine(url: str) -> Engine:
    """The engine for ``url`` in this process (re-created after a fork)."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_db_engine(url)
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
