"""The embedded broker's tables and queue rows, created once, by whichever process is first.

kombu's SQLAlchemy transport creates its schema on the first connection of each process
(``metadata.create_all``: look, then ``CREATE TABLE``) and each queue's row on its first use
(look, then ``INSERT``), guarded only by a lock between the threads of one process. Processes
that start together on a fresh ``broker.db`` (``renewals run``, a test starting workers and
schedulers at once) race on both: the loser gets ``table kombu_queue already exists`` or
``UNIQUE constraint failed: kombu_queue.name``, and a worker's consumer that meets the
second dies, since kombu counts only ``OperationalError`` as a connection error to retry.

:func:`prepare_sqlite_broker` does both steps before anything connects, inside one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock, so the processes take turns, waiting on
the busy timeout), with ``CREATE TABLE IF NOT EXISTS`` and ``INSERT OR IGNORE``: every process
may run it, and after the first one it changes nothing. kombu then finds everything in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

# A process waiting for another's preparation waits this long before giving up.
PREPARE_TIMEOUT_S = 30.0
# kombu's defaults (``queue_tablename``/``message_tablename`` transport options; we set none).
QUEUE_TABLE = "kombu_queue"
MESSAGE_TABLE = "kombu_message"
# A second process finds the row there: nothing to do.
_INSERT_QUEUE = text("INSERT OR IGNORE INTO kombu_queue (name) VALUES (:name)")


def is_sqlite_broker(broker_url: str) -> bool:
    return broker_url.startswith(("sqla+sqlite", "sqlalchemy+sqlite"))


def _kombu_metadata() -> Any:
    """kombu's own table definitions, registered the way its channel registers them (the
    classes are shared through kombu's registry, so the channel later reuses these)."""
    from kombu.transport.sqlalchemy.models import Message, ModelBase, Queue, class_registry
    from kombu.transport.sqlalchemy.models import metadata as kombu_metadata

    for name, base, table in (("Queue", Queue, QUEUE_TABLE), ("Message", Message, MESSAGE_TABLE)):
        if name not in class_registry:
            type(name, (base, ModelBase), {"__tablename__": table})
    return kombu_metadata


def prepare_sqlite_broker(broker_url: str, queues: Iterable[str]) -> bool:
    """Create the SQLite broker's tables and ``queues``' rows if missing (see the module
    docstring); False, doing nothing, for any other broker."""
    if not is_sqlite_broker(broker_url):
        return False
    url = make_url(broker_url.split("+", 1)[1])
    engine = create_engine(
        url, connect_args={"timeout": PREPARE_TIMEOUT_S, "isolation_level": None}
    )

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    metadata = _kombu_metadata()
    try:
        with engine.begin() as connection:
            metadata.create_all(connection, checkfirst=True)
            for queue in queues:
                connection.execute(_INSERT_QUEUE, {"name": queue})
    finally:
        engine.dispose()
    return True
