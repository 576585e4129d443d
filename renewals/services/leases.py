"""Named leases (``sweep_leases``): at most one holder at a time of a job that must not run
twice at once, without a lock held across transactions or tasks.

A holder takes or extends its lease with one conditional upsert: the row is written only if
it is new, expired, or already this holder's, and RETURNING tells whether it was. Two
contenders racing on PostgreSQL serialise on the row (the second one's condition is
re-checked against the first one's commit); on SQLite every transaction holds the write lock.
A holder that dies needs no cleanup: its lease expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.models import SweepLease


def hold(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Take lease ``name`` for ``holder`` until ``now + ttl``, or extend it if ``holder``
    has it already; False if someone else holds it and it has not expired."""
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert_(SweepLease).values(name=name, holder=holder, expires_at=now + ttl)
    taken = session.execute(
        stmt.on_conflict_do_update(
            index_elements=[SweepLease.name],
            set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
            where=or_(SweepLease.expires_at <= now, SweepLease.holder == holder),
        ).returning(SweepLease.holder)
    ).first()
    return taken is not None


def release(session: Session, name: str, holder: str) -> None:
    """Give lease ``name`` up, if ``holder`` still has it."""
    session.execute(delete(SweepLease).where(SweepLease.name == name, SweepLease.holder == holder))


def holder_of(session: Session, name: str, *, now: datetime) -> str | None:
    """Who holds lease ``name`` now (None: nobody, or it expired)."""
    lease = session.get(SweepLease, name)
    return lease.holder if lease is not None and lease.expires_at > now else None
