"""The drain: the sweep's follow-on claim chain, so that a due set larger than one batch is
claimed now, not one batch per beat.

When a sweep ran a batch full, the sweep task starts the chain (task ``renewals.sweep_drain``).
The chain holds the named lease :data:`CHAIN` (``sweep_leases``), so at most one runs at a
time; a second one sees the lease held and ends at once. Holding it, it loops: one
transaction materialises a batch of due periods and claims renewals, as many as
backpressure allows (:func:`renewals.services.sweep.claim_room`); after the commit the
claimed work is handed out (published); and again, until nothing is due.

The claim rate thus follows the workers, not ``RENEWALS_SWEEP_INTERVAL``: when
:data:`~renewals.services.sweep.DEPTH` claimed renewals wait to start, the chain polls for a
moment and then hands its lease on to a new message of its own task, queued behind the work
it claimed, so it frees its worker and runs again once workers have taken that work. A task
also hands on after :data:`BUDGET_S`, well inside Celery's soft time limit. Beats keep
running as before: their sweeps take a batch each (two beats, or a beat and the chain, split
the work by row locks), and start a new chain if the old one died and its lease expired.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.models.db import unit_of_work
from renewals.services import leases
from renewals.services.followups import FollowUps
from renewals.services.sweep import LIMITS, Limits, drain_step

log = structlog.get_logger(__name__)

CHAIN = "sweep_drain"
# The chain's lease outlives one task of the chain (Celery kills a task after 90 s) and the
# wait of its next message behind the work it claimed. If the chain dies, the next beat
# after this long starts a new one; until then the beats' own sweeps still claim.
CHAIN_LEASE = timedelta(seconds=120)
# One task of the chain hands on after this long: far inside the 60 s soft time limit, even
# with a slow last step.
BUDGET_S = 30.0
# Backpressure full: look again this often, for this long, before handing on to a message
# queued behind the claimed work (which keeps the worker free while the others catch up).
POLL_S = 0.2
FULL_WAIT_S = 2.0


class Outcome(StrEnum):
    DRAINED = "drained"  # nothing due any more; the lease is released
    HELD = "held"  # another chain holds the lease; nothing done
    LOST = "lost"  # the lease expired and someone else took it; stopped
    FULL = "full"  # backpressure stayed full; hand on (the lease is kept)
    BUDGET = "budget"  # this task's time is up; hand on (the lease is kept)


@dataclass(frozen=True, slots=True)
class Drained:
    outcome: Outcome
    holder: str
    steps: int = 0
    materialised: int = 0  # subscriptions whose due period was handled
    claimed: int = 0

    @property
    def hand_on(self) -> bool:
        """The chain must go on in a new message carrying ``holder``."""
        return self.outcome in (Outcome.FULL, Outcome.BUDGET)


def new_holder() -> str:
    return f"drain_{uuid.uuid4().hex}"


def drain(
    engine: Engine,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    hand_out: Callable[[FollowUps], object],
    holder: str | None = None,
    limits: Limits | None = None,
    budget_s: float = BUDGET_S,
    full_wait_s: float = FULL_WAIT_S,
    poll_s: float = POLL_S,
) -> Drained:
    """Run the chain (see the module docstring) as ``holder`` (a new chain when None);
    ``hand_out`` gets each step's claimed work after its commit."""
    limits = limits or LIMITS
    holder = holder or new_holder()
    started = time.monotonic()
    full_since: float | None = None
    steps = materialised = claimed = 0

    def result(outcome: Outcome) -> Drained:
        return Drained(outcome, holder, steps, materialised, claimed)

    while True:
        with unit_of_work(engine) as session:
            now = clock()
            # Taken (or extended) in the step's own transaction: a chain that lost its
            # lease claims nothing more.
            if not leases.hold(session, CHAIN, holder, now=now, ttl=CHAIN_LEASE):
                return result(Outcome.LOST if steps else Outcome.HELD)
            step = drain_step(session, now=now, settings=settings, limits=limits)
        hand_out(step.follow)
        steps += 1
        materialised += step.due_subscriptions
        claimed += step.claimed
        if step.drained:
            with unit_of_work(engine) as session:
                leases.release(session, CHAIN, holder)
            return result(Outcome.DRAINED)
        if step.due_subscriptions or step.claim_limit >= limits.batch:
            full_since = None  # a full step: go again at once
        else:
            # Held back by backpressure, nothing left to materialise: the workers set the
            # pace. Claim what they free for a moment, then hand on behind the claimed work.
            full_since = full_since if full_since is not None else time.monotonic()
            if time.monotonic() - full_since >= full_wait_s:
                return result(Outcome.FULL)
            time.sleep(poll_s)
        if time.monotonic() - started >= budget_s:
            return result(Outcome.BUDGET)
