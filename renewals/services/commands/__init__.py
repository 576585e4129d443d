"""Operator commands over the task queue (the README's table): each is a row in
``operator_commands`` and a task with a stable name that runs it where the workers run,
under the same locks as the engine's own work, audited with actor and reason."""

from renewals.services.commands.base import Outcome, Refusal
from renewals.services.commands.registry import COMMANDS
from renewals.services.commands.runner import (
    InvalidCommand,
    command_view,
    dry_run,
    run_command,
    submit,
    validate,
)

__all__ = [
    "COMMANDS",
    "InvalidCommand",
    "Outcome",
    "Refusal",
    "command_view",
    "dry_run",
    "run_command",
    "submit",
    "validate",
]
