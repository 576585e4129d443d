"""The one rule every domain function applies to its instants: timezone-aware UTC only.

The domain never reads a clock; callers pass ``now``. A naive datetime is ambiguous (local
time? UTC read back from SQLite without its zone?) and a non-UTC offset would silently shift
period boundaries and "days after" timelines, so both are rejected loudly at the boundary
instead of producing a subtly wrong schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def require_utc(value: datetime, name: str) -> datetime:
    """Return ``value`` with ``tzinfo=UTC`` or raise :class:`ValueError` saying what was wrong.

    Any tzinfo whose offset at ``value`` is zero is accepted (``datetime.UTC``,
    ``ZoneInfo("UTC")``, ``timezone(timedelta(0))``) and normalised to ``datetime.UTC`` so
    results compare and print consistently.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(
            f"{name} must be a timezone-aware UTC datetime, got naive {value.isoformat()} "
            "(attach tzinfo=datetime.UTC)"
        )
    if offset != timedelta(0):
        raise ValueError(
            f"{name} must be in UTC, got {value.isoformat()} (non-zero UTC offset); "
            "convert with .astimezone(datetime.UTC) first"
        )
    return value.replace(tzinfo=UTC)


def require_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an int no smaller than ``minimum``; bools are refused (``True`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
