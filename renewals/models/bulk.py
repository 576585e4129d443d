"""Many rows in one INSERT, skipping those that conflict, with what was inserted.

On PostgreSQL the rows travel as one array per column and the statement is
``INSERT … SELECT * FROM unnest(…) ON CONFLICT DO NOTHING RETURNING …``: a handful of
parameters whatever the number of rows. (The generic multi-row VALUES form costs the driver
more to build and parse than the server needs to insert: it was most of an import's time.)
SQLite runs in-process, so there it is the usual executemany (SQLAlchemy batches it into
multi-row VALUES statements).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Column, Table, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str] | None,
    returning: Sequence[Column[Any]] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (each with the same keys) into ``table``; with ``conflict`` (the
    columns of a unique index) a row that would break it is skipped. Returns the
    ``returning`` columns of the rows inserted (nothing when ``returning`` is empty)."""
    if not rows:
        return []
    names = list(rows[0])
    if session.get_bind().dialect.name == "postgresql":
        columns = []
        for name in names:
            column = table.c[name]
            values = [row[name] for row in rows]
            if isinstance(column.type, JSON):
                # psycopg would send dicts as one json value, not an array of them.
                texts = [None if v is None else json.dumps(v) for v in values]
                array = bindparam(f"a_{name}", texts, type_=ARRAY(Text))
                columns.append(cast(func.unnest(array), JSON).label(name))
            else:
                array = bindparam(f"a_{name}", values, type_=ARRAY(column.type))
                columns.append(cast(func.unnest(array), column.type).label(name))
        stmt: Any = pg_insert(table).from_select(names, select(*columns))
        if conflict is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        if returning:
            return list(session.execute(stmt.returning(*returning)).all())
        session.execute(stmt)
        return []
    stmt = sqlite_insert(table)
    if conflict is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        return list(session.execute(stmt.returning(*returning), list(rows)).all())
    session.execute(stmt, list(rows))
    return []
