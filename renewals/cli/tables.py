"""Plain-text tables and the ``--json`` switch shared by the read commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from renewals.cli.errors import DatabaseMissing
from renewals.config import Settings
from renewals.models.db import get_engine


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns under upper-case headers; ``None`` shows as ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """``data`` as indented JSON, or as ``render`` draws it for people."""
    click.echo(json.dumps(data, indent=2) if as_json else render(data))


def read_engine(settings: Settings) -> Engine:
    """The engine of a command that only reads: a SQLite file that does not exist is an
    error to report, not one to create empty (and then fail on a missing table)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        if not url.database.startswith("file:") and not Path(url.database).exists():
            raise DatabaseMissing(url.database)
    return get_engine(settings.database_url)


def when(iso: str | None) -> str | None:
    """An ISO instant from a view as ``2026-01-31 09:00Z`` (every instant is UTC)."""
    if iso is None:
        return None
    from datetime import datetime

    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%MZ}"
