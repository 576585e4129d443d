"""The operator commands sent through the task queue (``renewals.services.commands``).

Each is one task with a stable name (:mod:`renewals.worker.names`) whose message carries
only the id of its ``operator_commands`` row; the row holds the JSON arguments, the actor,
and the outcome the task writes.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["HALT_SWITCH", "CommandName"]

# The switch that stops every charge (``renewals halt`` / ``renewals unhalt``).
HALT_SWITCH = "halt"


class CommandName(StrEnum):
    SWEEP = "sweep"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RESEND_EMAIL = "resend_email"
    RECONCILE = "reconcile"
    RESOLVE_REVIEW = "resolve_review"
    HALT = "halt"
    UNHALT = "unhalt"
