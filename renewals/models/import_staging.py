"""The staging table of an import: checked rows loaded in bulk into a temporary table of the
import's own connection, so that comparing with and writing to the real tables are a few
set-based statements instead of work per row.

Loading bypasses SQLAlchemy's per-row parameter handling, which was most of an import's
time: PostgreSQL gets ``COPY … FROM STDIN`` (then ``ANALYZE``, so the planner knows the table
holds many rows rather than guessing), SQLite one ``executemany`` of plain tuples. Instants
are converted by the same type the models use (:class:`~renewals.models.base.UTCDateTime`),
so a staged value is stored exactly as the ORM stores it and compares equal to it in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
)

from renewals.models.base import UTCDateTime

# Not the models' metadata: Alembic must never see (or try to create) this table.
_metadata = MetaData()

staging = Table(
    "import_rows",
    _metadata,
    Column("line", Integer, nullable=False),
    Column("external_id", String(64), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(200)),
    Column("customer_id", String(64), nullable=False),  # cus_…
    Column("payment_method_id", String(64), nullable=False),  # pm_…
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("interval", String(32), nullable=False),
    Column("interval_count", Integer, nullable=False),
    Column("anchor", UTCDateTime, nullable=False),
    Column("price_id", String(64)),
    # The file's first row naming this customer / card: the row whose email and name create
    # it (the file was checked to give each customer one email, each card one customer).
    Column("first_customer", Boolean, nullable=False),
    Column("first_card", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)

COLUMNS = tuple(column.name for column in staging.columns)
ANCHOR = COLUMNS.index("anchor")

StagedRow = tuple[Any, ...]  # values in COLUMNS order


def create(connection: Connection) -> None:
    """The empty staging table (dropping one a failed import left on this connection)."""
    drop(connection)
    staging.create(connection)


def drop(connection: Connection) -> None:
    staging.drop(connection, checkfirst=True)


def load(connection: Connection, rows: Iterable[StagedRow]) -> None:
    """Load ``rows`` in the connection's current transaction."""
    # The driver's own connection (psycopg's or sqlite3's), in the same transaction.
    raw: Any = connection.connection.dbapi_connection
    dialect = connection.dialect
    if dialect.name == "postgresql":
        with raw.cursor() as cursor:
            names = ", ".join(f'"{name}"' for name in COLUMNS)
            with cursor.copy(f"COPY import_rows ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute("ANALYZE import_rows")
        return
    to_text = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert to_text is not None
    marks = ", ".join("?" for _ in COLUMNS)
    # Only constants are put into the statement; every value is a parameter.
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO import_rows VALUES ({marks})",  # noqa: S608
            _with_text_instants(rows, to_text),
        )
    finally:
        cursor.close()


def _with_text_instants(rows: Iterable[StagedRow], to_text: Any) -> Iterable[StagedRow]:
    for row in rows:
        yield (*row[:ANCHOR], to_text(row[ANCHOR]), *row[ANCHOR + 1 :])


def line_ranges(lines: Sequence[int], size: int) -> list[tuple[int, int]]:
    """``lines`` (ascending) cut into inclusive ranges of at most ``size`` rows each."""
    return [
        (lines[start], lines[min(start + size, len(lines)) - 1])
        for start in range(0, len(lines), size)
    ]
