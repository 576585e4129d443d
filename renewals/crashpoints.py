"""Crash points: named places where a fault test may kill the process, as a power cut would.

This exists only for fault testing (``tests/chaos``, ``make chaos``). It is inert unless
``RENEWALS_CRASH_POINTS`` names points, and production refuses the variables at start-up
(``renewals.config.production_problems``) and ignores them here, so a stray variable can
never crash a production worker.

``RENEWALS_CRASH_POINTS`` is a comma-separated list of point names, each optionally with a
probability (``after_attempt_commit:0.3``; default 1). How often a named point fires:

* with ``RENEWALS_CRASH_TOKENS`` naming a directory, a point fires once per *token*: a file
  named ``<point>.<anything>`` there. The process that manages to unlink a token (unlink is
  atomic: of two processes racing for one file, exactly one succeeds) crashes; no token, no
  crash. The test arms N crashes by writing N files, and counts the crashes that fired by
  the files that are gone. Deterministic, and one long-lived worker can take any number of
  crashes: with the prefork pool a crash kills one pool child, billiard forks a new one and
  the worker's main process lives on.
* without it, the point fires with its probability, from a generator seeded with
  ``RENEWALS_CRASH_SEED`` (default 0) and the process id, so a run can be repeated.

A crash is SIGKILL to the process itself: no ``finally`` block, no ``atexit``, no flush, no
goodbye to the database or the broker, exactly what a killed machine leaves behind.

The points, in the order a renewal meets them: ``before_claim_commit`` and
``after_claim_commit`` (the sweep's claim), ``after_attempt_commit`` (the charge attempt
committed, nothing sent), ``request_sent_response_unread`` (FastStar answered, the body not
read), ``response_read_result_uncommitted`` (the outcome recorded in the open transaction),
``result_committed_unacked`` (a task's work committed, its message not acknowledged) and
``outbox_written_not_delivered`` (an email claimed for sending, not yet handed to SMTP).
"""

from __future__ import annotations

import functools
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

POINTS = (
    "before_claim_commit",
    "after_claim_commit",
    "after_attempt_commit",
    "request_sent_response_unread",
    "response_read_result_uncommitted",
    "result_committed_unacked",
    "outbox_written_not_delivered",
)
POINTS_VAR = "RENEWALS_CRASH_POINTS"
TOKENS_VAR = "RENEWALS_CRASH_TOKENS"
SEED_VAR = "RENEWALS_CRASH_SEED"


@dataclass(frozen=True, slots=True)
class Armed:
    """The armed points with their probability, and where their tokens are (if anywhere)."""

    points: dict[str, float]
    tokens: Path | None
    seed: int


def parse(spec: str, tokens: str = "", seed: str = "") -> Armed:
    """Read the variables' values; ValueError names an unknown point or a bad probability,
    so a typo in a fault test fails loudly instead of testing nothing."""
    points: dict[str, float] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, probability = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"unknown crash point {name!r} (known: {', '.join(POINTS)})")
        try:
            p = float(probability) if probability else 1.0
        except ValueError:
            raise ValueError(f"the probability of {name} is not a number") from None
        if not 0.0 < p <= 1.0:
            raise ValueError(f"the probability of {name} must be in (0, 1]")
        points[name] = p
    return Armed(points, Path(tokens) if tokens else None, int(seed or 0))


@functools.cache
def _armed() -> Armed:
    # Read once per process: a crash point sits on hot paths.
    if os.environ.get("RENEWALS_ENV") == "production":
        return Armed({}, None, 0)
    return parse(
        os.environ.get(POINTS_VAR, ""), os.environ.get(TOKENS_VAR, ""), os.environ.get(SEED_VAR, "")
    )


@functools.cache
def _rng(pid: int) -> random.Random:
    return random.Random(f"{_armed().seed}:{pid}")  # noqa: S311 - picks crashes, not secrets


def _take_token(directory: Path, name: str) -> bool:
    try:
        tokens = sorted(directory.glob(f"{name}.*"))
    except OSError:
        return False
    for token in tokens:
        try:
            token.unlink()
        except FileNotFoundError:  # another process took this one
            continue
        return True
    return False


def should_fire(name: str) -> bool:
    armed = _armed()
    probability = armed.points.get(name)
    if probability is None:
        return False
    if armed.tokens is not None:
        return _take_token(armed.tokens, name)
    return _rng(os.getpid()).random() < probability


def crash_point(name: str) -> None:
    """Die here, at once, if a fault test armed ``name``; otherwise do nothing."""
    if should_fire(name):
        # Straight to the file descriptor: buffered log output would die with the process.
        os.write(2, f"crash point {name} fired in process {os.getpid()}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
