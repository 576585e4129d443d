"""Operator commands and switches: every status change and its audit row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.domain.states import (
    COMMAND_TRANSITIONS,
    SWITCH_TRANSITIONS,
    CommandEvent,
    CommandStatus,
    SwitchEvent,
    SwitchStatus,
)
from renewals.models import OperatorCommand, Switch
from renewals.transitions._audit import audit_row, write, write_many

# How long a freshly sent command's message is trusted to reach a worker before the sweep
# hands the command on again (the webhook inbox uses the same figure).
HANDOFF_LEASE = timedelta(seconds=60)


def create_command(
    session: Session, *, now: datetime, actor: str, name: str, arguments: dict[str, Any]
) -> int:
    """A new pending command; returns its id. Its audit row names the arguments."""
    command = OperatorCommand(
        actor=actor,
        name=name,
        arguments=arguments,
        status=CommandStatus.PENDING.value,
        lease_expires_at=now + HANDOFF_LEASE,
        created_at=now,
    )
    session.add(command)
    session.flush()
    write(
        session,
        now=now,
        actor=actor,
        action="command_sent",
        entity="command",
        entity_id=command.id,
        to_status=CommandStatus.PENDING,
        reason=arguments.get("reason"),
        details={"name": name, "arguments": arguments},
    )
    return command.id


def move_command(
    session: Session,
    command: OperatorCommand,
    event: CommandEvent,
    *,
    now: datetime,
    lease_seconds: int | None = None,
    result: str | None = None,
) -> None:
    before = command.status
    command.status = COMMAND_TRANSITIONS.apply(CommandStatus(before), event).value
    command.lease_expires_at = now + timedelta(seconds=lease_seconds) if lease_seconds else None
    if event is CommandEvent.CLAIMED:
        command.started_at = now
    else:
        command.result = result
        command.finished_at = now
    write(
        session,
        now=now,
        actor=command.actor,
        action=f"command_{event}",
        entity="command",
        entity_id=command.id,
        from_status=before,
        to_status=command.status,
        reason=result,
        details={"name": command.name},
    )


def lost_commands(session: Session, *, now: datetime, lease_seconds: int) -> list[tuple[int, str]]:
    """Commands whose worker vanished (``running`` past its lease: back to ``pending``) or
    whose message never arrived (``pending`` past its hand-off lease), leased again for a
    new hand-off. Returns ``(id, name)`` of each, for the sweep to send on."""
    after = COMMAND_TRANSITIONS.apply(CommandStatus.RUNNING, CommandEvent.LEASE_EXPIRED)
    vanished = session.execute(
        update(OperatorCommand)
        .where(
            OperatorCommand.status == CommandStatus.RUNNING.value,
            OperatorCommand.lease_expires_at <= now,
        )
        .values(status=after.value, lease_expires_at=now)
        .returning(OperatorCommand.id, OperatorCommand.actor, OperatorCommand.name)
        .execution_options(synchronize_session=False)
    ).all()
    write_many(
        session,
        [
            audit_row(
                now=now,
                actor="sweep",
                action=f"command_{CommandEvent.LEASE_EXPIRED}",
                entity="command",
                entity_id=command_id,
                from_status=CommandStatus.RUNNING,
                to_status=after,
                reason="the worker running it vanished; it runs again",
                details={"name": name, "by": actor},
            )
            for command_id, actor, name in vanished
        ],
    )
    due = session.execute(
        select(OperatorCommand.id, OperatorCommand.name)
        .where(OperatorCommand.status == CommandStatus.PENDING.value)
        .where(
            or_(
                OperatorCommand.lease_expires_at.is_(None),
                OperatorCommand.lease_expires_at <= now,
            )
        )
        .order_by(OperatorCommand.id)
        .with_for_update(skip_locked=True)
    ).all()
    if due:
        session.execute(
            update(OperatorCommand)
            .where(OperatorCommand.id.in_([command_id for command_id, _ in due]))
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
    return [(command_id, name) for command_id, name in due]


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def lock_switch(session: Session, name: str, *, now: datetime) -> Switch:
    """The switch's row, locked; created ``off`` on first use (a missing row is off)."""
    session.execute(
        _insert(session)(Switch)
        .values(
            name=name,
            status=SwitchStatus.OFF.value,
            changed_at=now,
            changed_by="system",
            reason=None,
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.scalars(select(Switch).where(Switch.name == name).with_for_update()).one()


def move_switch(
    session: Session,
    switch: Switch,
    event: SwitchEvent,
    *,
    now: datetime,
    actor: str,
    reason: str | None,
) -> None:
    before = switch.status
    switch.status = SWITCH_TRANSITIONS.apply(SwitchStatus(before), event).value
    switch.changed_at = now
    switch.changed_by = actor
    switch.reason = reason
    write(
        session,
        now=now,
        actor=actor,
        action=f"{switch.name}_{event}",
        entity="switch",
        from_status=before,
        to_status=switch.status,
        reason=reason,
        details={"switch": switch.name},
    )
