"""What every operator command shares: its context, its outcome, refusals, arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.services.followups import FollowUps

Arguments = dict[str, Any]


class Refusal(Exception):
    """The command cannot be carried out; the message names the reason and the way out.
    Raised inside the command's transaction, so nothing it did is kept."""


@dataclass(frozen=True, slots=True)
class Context:
    engine: Engine
    settings: Settings
    faststar: FastStarClient
    now: datetime
    actor: str
    # None for a dry run: nothing is written, so there is no row either.
    command_id: int | None


@dataclass(slots=True)
class Outcome:
    """What the command did (its row's result), and the work to hand on after the commit.

    ``ok`` False is a command that did something other than what was asked, which is kept
    (a cancel that found the customer had paid books the payment instead): the row is
    ``refused`` with this text, and the operator is told so."""

    text: str
    follow: FollowUps = field(default_factory=FollowUps)
    ok: bool = True


Prepare = Callable[[Context, Arguments], object]
Run = Callable[[Context, Session, Arguments, object], Outcome]


@dataclass(frozen=True, slots=True)
class Field:
    kind: type
    required: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """One operator command: its arguments, an optional step outside any transaction (a
    question to FastStar), and its work inside one transaction."""

    fields: Mapping[str, Field]
    run: Run
    prepare: Prepare | None = None
    check: Callable[[Arguments], str | None] | None = None
    dry_run: bool = True

    def validate(self, arguments: Mapping[str, Any]) -> str | None:
        """Why these JSON arguments are not acceptable, or None."""
        unknown = sorted(set(arguments) - set(self.fields))
        if unknown:
            return f"unknown argument(s): {', '.join(unknown)}"
        for key, spec in self.fields.items():
            value = arguments.get(key)
            if value is None:
                if spec.required:
                    return f"missing argument: {key}"
                continue
            # bool is an int in Python; JSON keeps them apart, and so do we.
            if not isinstance(value, spec.kind) or (spec.kind is int and isinstance(value, bool)):
                return f"argument {key} must be {spec.kind.__name__}, got {value!r}"
        return self.check(dict(arguments)) if self.check else None


def reason_of(arguments: Arguments, default: str) -> str:
    reason = arguments.get("reason")
    return str(reason) if reason else default
