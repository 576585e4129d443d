"""Operator commands over the task queue: ``sweep``, ``retry``, ``pause``, ``resume``,
``cancel``, ``resend-email``, ``halt``, ``unhalt`` (``reconcile`` and ``reviews resolve``
live with their read commands), and ``command ID`` to look one up.

Each writes an ``operator_commands`` row and sends the command's task; a worker runs it.
Without ``--wait`` the command id is printed; with it the outcome is, and a refusal is a
message and a non-zero exit. ``--dry-run`` validates and says what would happen, here and
now, writing nothing.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from renewals.cli.root import main, settings_or_exit
from renewals.domain.commands import CommandName
from renewals.domain.states import FINISHED_COMMAND_STATUSES, CommandStatus
from renewals.models.db import get_engine, unit_of_work
from renewals.services.commands import InvalidCommand, command_view, dry_run, submit
from renewals.services.halt import describe_halt, halt_switch

F = TypeVar("F", bound=Callable[..., Any])

# Exit status when --wait gave up while the command was still pending or running.
STILL_WAITING_EXIT = 3
POLL_INTERVAL_S = 0.1


def show_halt(session: Session) -> None:
    """Every read command says so while charges are halted (on stderr: --json stays JSON)."""
    switch = halt_switch(session)
    if switch is not None:
        click.echo(describe_halt(switch), err=True)


def actor_name(actor: str | None) -> str:
    return f"operator:{actor or getpass.getuser()}"


def sending_options(*, dry: bool = True, wait_default: bool = False) -> Callable[[F], F]:
    """--actor, --wait (--no-wait), --timeout, and --dry-run where it makes sense."""

    def decorate(command: F) -> F:
        command = click.option(
            "--actor", default=None, help="Who decides (default: the login name)."
        )(command)
        command = click.option(
            "--wait/--no-wait",
            default=wait_default,
            show_default=True,
            help="Wait for a worker's outcome and print it.",
        )(command)
        command = click.option(
            "--timeout", default=60.0, show_default=True, type=float, help="Seconds to --wait."
        )(command)
        if dry:
            command = click.option(
                "--dry-run", is_flag=True, help="Say what would happen; write nothing."
            )(command)
        return command

    return decorate


def send(
    name: CommandName,
    arguments: dict[str, Any],
    *,
    actor: str | None,
    wait: bool,
    timeout: float,
    dry: bool = False,
) -> None:
    """Validate, write the command, hand it to a worker; print its id or its outcome."""
    settings = settings_or_exit()
    engine = get_engine(settings.database_url)
    who = actor_name(actor)
    now = datetime.now(UTC)
    arguments = {key: value for key, value in arguments.items() if value is not None}
    if dry:
        from renewals.runtime import build_runtime

        try:
            ok, text = dry_run(
                settings,
                engine,
                build_runtime(settings).faststar,
                now,
                name.value,
                arguments,
                actor=who,
            )
        except InvalidCommand as exc:
            raise click.UsageError(str(exc)) from None
        if not ok:
            raise click.ClickException(f"dry run, nothing written: refused: {text}")
        click.echo(f"dry run, nothing written: {text}")
        return
    try:
        command_id = submit(engine, name.value, arguments, actor=who, now=now)
    except InvalidCommand as exc:
        raise click.UsageError(str(exc)) from None
    # Imported here: the Celery app is only needed once there is something to send.
    from renewals.worker.publish import publish
    from renewals.worker.tasks import COMMAND_TASKS

    if not publish(COMMAND_TASKS[name], command_id):
        click.echo(
            f"command {command_id}: the broker did not take it now; the sweep hands it to a "
            "worker within a minute",
            err=True,
        )
    if not wait:
        click.echo(command_id)
        return
    report(_wait(engine, command_id, timeout))


def _wait(engine: Any, command_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with unit_of_work(engine) as session:
            view = command_view(session, command_id)
        assert view is not None
        if view["status"] in FINISHED_COMMAND_STATUSES or time.monotonic() > deadline:
            return view
        time.sleep(POLL_INTERVAL_S)


def report(view: dict[str, Any]) -> None:
    """The outcome on stdout and exit 0, or a message on stderr and a non-zero exit."""
    status, result = view["status"], view["result"]
    if status == CommandStatus.DONE:
        click.echo(result)
        return
    if status in (CommandStatus.REFUSED, CommandStatus.FAILED):
        raise click.ClickException(f"command {view['id']} {status}: {result}")
    click.echo(
        f"command {view['id']} is still {status}: is a worker running? "
        f"`renewals command {view['id']}` shows it later",
        err=True,
    )
    raise SystemExit(STILL_WAITING_EXIT)


@main.command("command")
@click.argument("command_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def command(command_id: int, as_json: bool) -> None:
    """Show an operator command: its arguments, status and outcome."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        show_halt(session)
        view = command_view(session, command_id)
    if view is None:
        raise click.ClickException(f"no command {command_id}")
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(
        f"command {view['id']} {view['name']} {json.dumps(view['arguments'])} by "
        f"{view['actor']}: {view['status']}" + (f": {view['result']}" if view["result"] else "")
    )


_reason = click.option("--reason", default=None, help="Why (written to the audit trail).")


@main.command("sweep")
@sending_options(dry=False)
def sweep_now(actor: str | None, wait: bool, timeout: float) -> None:
    """Run a sweep now (beat runs one every RENEWALS_SWEEP_INTERVAL anyway)."""
    send(CommandName.SWEEP, {}, actor=actor, wait=wait, timeout=timeout)


def _subscription_command(name: CommandName, doc: str) -> None:
    @main.command(name.value, help=doc)
    @click.argument("subscription_id", type=int)
    @_reason
    @sending_options()
    def run(
        subscription_id: int,
        reason: str | None,
        actor: str | None,
        wait: bool,
        timeout: float,
        dry_run: bool,
    ) -> None:
        send(
            name,
            {"subscription_id": subscription_id, "reason": reason},
            actor=actor,
            wait=wait,
            timeout=timeout,
            dry=dry_run,
        )


_subscription_command(
    CommandName.RETRY,
    "A new charge attempt now for the subscription's due renewal, outside the dunning "
    "schedule (a decline counts no dunning failure). Refused while an attempt is in flight "
    "or unknown.",
)
_subscription_command(
    CommandName.PAUSE, "Pause a subscription: nothing is charged until it is resumed."
)
_subscription_command(
    CommandName.RESUME,
    "Resume a paused subscription: renewals held while paused are charged now; periods "
    "that ended while paused are not billed.",
)


@main.command("cancel")
@click.argument("subscription_id", type=int)
@click.option("--at-period-end", is_flag=True, help="Cancel when the current period ends.")
@_reason
@sending_options()
def cancel(
    subscription_id: int,
    at_period_end: bool,
    reason: str | None,
    actor: str | None,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> None:
    """Cancel a subscription now (its open renewals are abandoned) or at its period's end.

    A subscription waiting for its customer to authenticate is canceled only once FastStar
    has said none of its checkout sessions was paid; a paid one is booked instead."""
    send(
        CommandName.CANCEL,
        {"subscription_id": subscription_id, "at_period_end": at_period_end, "reason": reason},
        actor=actor,
        wait=wait,
        timeout=timeout,
        dry=dry_run,
    )


@main.command("resend-email")
@click.argument("message_id", type=int)
@_reason
@sending_options()
def resend_email(
    message_id: int,
    reason: str | None,
    actor: str | None,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> None:
    """Queue a sent or failed email again (a new outbox row: the old one stays the record)."""
    send(
        CommandName.RESEND_EMAIL,
        {"message_id": message_id, "reason": reason},
        actor=actor,
        wait=wait,
        timeout=timeout,
        dry=dry_run,
    )


@main.command("halt")
@_reason
@sending_options()
def halt(reason: str | None, actor: str | None, wait: bool, timeout: float, dry_run: bool) -> None:
    """Emergency brake: no charge starts until `renewals unhalt`; everything else goes on."""
    send(CommandName.HALT, {"reason": reason}, actor=actor, wait=wait, timeout=timeout, dry=dry_run)


@main.command("unhalt")
@_reason
@sending_options()
def unhalt(
    reason: str | None, actor: str | None, wait: bool, timeout: float, dry_run: bool
) -> None:
    """Release the emergency brake: the next sweep claims every due charge."""
    send(
        CommandName.UNHALT,
        {"reason": reason},
        actor=actor,
        wait=wait,
        timeout=timeout,
        dry=dry_run,
    )
