"""Named leases: at most one holder of a job that must not run twice at once (the sweep's
follow-on claim chain). A holder takes a lease with one conditional upsert and keeps it by
extending ``expires_at``; a holder that dies simply lets it expire."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from renewals.models.base import Base, UTCDateTime


class SweepLease(Base):
    __tablename__ = "sweep_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A random token per chain, handed from one task of the chain to the next.
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
