"""Sending an operator command, running it in a worker, and trying it dry.

- :func:`submit` (the CLI) validates the JSON arguments and writes the pending row; the
  caller then publishes the command's task with the row's id.
- :func:`run_command` (the task) claims the row (``running``), asks FastStar what the
  command needs to know outside any transaction, then does the command's work and writes
  its outcome (``done``/``refused``) in one transaction: the effect and its record commit
  together. A refusal rolls the work back; an unexpected error is ``failed``.
- :func:`dry_run` does the same work in a transaction that is rolled back: what would
  happen, with nothing written (no row either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.commands import CommandName
from renewals.domain.states import CommandEvent, CommandStatus
from renewals.faststar import FastStarClient
from renewals.logs import redact_text
from renewals.models import OperatorCommand
from renewals.models.db import session_factory, unit_of_work
from renewals.services.commands.base import Arguments, Context, Outcome, Refusal
from renewals.services.commands.registry import COMMANDS
from renewals.services.followups import FollowUps

log = structlog.get_logger(__name__)


class InvalidCommand(ValueError):
    """Not a command, or arguments it does not take."""


def validate(name: str, arguments: Arguments) -> CommandName:
    try:
        command = CommandName(name)
    except ValueError:
        raise InvalidCommand(f"no command {name!r}") from None
    problem = COMMANDS[command].validate(arguments)
    if problem is not None:
        raise InvalidCommand(f"{name}: {problem}")
    return command


def submit(engine: Engine, name: str, arguments: Arguments, *, actor: str, now: datetime) -> int:
    """Write the pending command; returns its id (raises :class:`InvalidCommand`)."""
    command = validate(name, arguments)
    with unit_of_work(engine) as session:
        return transitions.create_command(
            session, now=now, actor=actor, name=command.value, arguments=arguments
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    name: CommandName
    arguments: Arguments
    actor: str
    started_at: datetime


class _Overtaken(Exception):
    """The lease ran out and another run claimed the command: this one keeps nothing."""


def _lock_own(session: Session, command_id: int, claimed: Claimed) -> OperatorCommand:
    row = session.get_one(OperatorCommand, command_id, with_for_update=True)
    if row.status != CommandStatus.RUNNING.value or row.started_at != claimed.started_at:
        raise _Overtaken
    return row


def _claim(
    session: Session, command_id: int, expected: str | None, now: datetime, lease: int
) -> Claimed | None:
    row = session.scalars(
        select(OperatorCommand).where(OperatorCommand.id == command_id).with_for_update()
    ).one_or_none()
    if row is None or row.status != CommandStatus.PENDING.value:
        # Delivered twice, or already run by the sweep's second hand-off: nothing to do.
        log.info("command_skipped", command_id=command_id, found=row.status if row else "missing")
        return None
    if expected is not None and row.name != expected:
        log.warning("command_task_mismatch", command_id=command_id, name=row.name, task=expected)
        return None
    transitions.move_command(session, row, CommandEvent.CLAIMED, now=now, lease_seconds=lease)
    return Claimed(CommandName(row.name), dict(row.arguments), row.actor, now)


def _finish(
    engine: Engine,
    command_id: int,
    claimed: Claimed,
    event: CommandEvent,
    result: str,
    *,
    now: datetime,
) -> None:
    try:
        with unit_of_work(engine) as session:
            row = _lock_own(session, command_id, claimed)
            transitions.move_command(session, row, event, now=now, result=result)
    except _Overtaken:
        log.warning("command_overtaken", command_id=command_id)


def run_command(
    settings: Settings,
    engine: Engine,
    faststar: FastStarClient,
    clock: Callable[[], datetime],
    command_id: int,
    *,
    expected: str | None = None,
) -> FollowUps:
    """The task's work (module docstring); returns what to hand on after the commit."""
    with unit_of_work(engine) as session:
        claimed = _claim(session, command_id, expected, clock(), settings.lease_seconds)
    if claimed is None:
        return FollowUps()
    command = COMMANDS[claimed.name]
    ctx = Context(engine, settings, faststar, clock(), claimed.actor, command_id)
    bound = structlog.contextvars.bound_contextvars(
        command=claimed.name.value, command_id=command_id
    )
    with bound:
        try:
            problem = command.validate(claimed.arguments)
            if problem is not None:
                raise Refusal(problem)
            prepared = command.prepare(ctx, claimed.arguments) if command.prepare else None
            ctx = Context(engine, settings, faststar, clock(), claimed.actor, command_id)
            with unit_of_work(engine) as session:
                # The row first: a run whose lease ran out meanwhile must not act twice.
                row = _lock_own(session, command_id, claimed)
                outcome = command.run(ctx, session, claimed.arguments, prepared)
                event = CommandEvent.DONE if outcome.ok else CommandEvent.REFUSED
                transitions.move_command(session, row, event, now=ctx.now, result=outcome.text)
        except _Overtaken:
            log.warning("command_overtaken", command_id=command_id)
            return FollowUps()
        except Refusal as refusal:
            log.info("command_refused", reason=str(refusal))
            _finish(engine, command_id, claimed, CommandEvent.REFUSED, str(refusal), now=clock())
            return FollowUps()
        except Exception as exc:  # the command's answer; the worker goes on
            log.exception("command_failed")
            error = redact_text(f"{type(exc).__name__}: {exc}")
            _finish(engine, command_id, claimed, CommandEvent.FAILED, error, now=clock())
            return FollowUps()
    log.info("command_done", ok=outcome.ok)
    return outcome.follow


def dry_run(
    settings: Settings,
    engine: Engine,
    faststar: FastStarClient,
    now: datetime,
    name: str,
    arguments: Arguments,
    *,
    actor: str,
) -> tuple[bool, str]:
    """What the command would do now, with nothing written: ``(ok, text)``."""
    command_name = validate(name, arguments)
    command = COMMANDS[command_name]
    if not command.dry_run:
        raise InvalidCommand(f"{name} has no dry run")
    ctx = Context(engine, settings, faststar, now, actor, None)
    try:
        prepared = command.prepare(ctx, arguments) if command.prepare else None
        with session_factory(engine)() as session:
            session.begin()
            try:
                outcome: Outcome = command.run(ctx, session, arguments, prepared)
            finally:
                session.rollback()
    except Refusal as refusal:
        return False, str(refusal)
    return outcome.ok, outcome.text


def command_view(session: Session, command_id: int) -> dict[str, Any] | None:
    row = session.get(OperatorCommand, command_id)
    if row is None:
        return None
    return {
        "id": row.id,
        "name": row.name,
        "actor": row.actor,
        "arguments": row.arguments,
        "status": row.status,
        "result": row.result,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }
