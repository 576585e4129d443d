"""What operators send and switch: one row per command, and named switches (``halt``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from renewals.models.base import Base, BigId, UTCDateTime


class OperatorCommand(Base):
    """One operator command sent through the task queue (``renewals.services.commands``).

    The row is the record and the answer: task results stay off, so the task writes the
    outcome here and ``--wait`` reads it. The message only names the row's id."""

    __tablename__ = "operator_commands"
    __table_args__ = (Index("ix_operator_commands_due", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))  # "operator:<name>"
    name: Mapped[str] = mapped_column(String(32))  # "pause", "reconcile", …
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # domain.states.CommandStatus
    result: Mapped[str | None] = mapped_column(Text)
    # Pending: until when its hand-off to a worker is trusted; running: the worker's lease.
    # Either way the sweep hands an expired one on again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Switch(Base):
    """A named operator switch; a missing row is ``off``. ``halt`` stops every charge."""

    __tablename__ = "switches"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # domain.states.SwitchStatus
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
