"""The beat schedule: the scheduler only dispatches. Finding and claiming due work is the
sweep service's (``renewals.services.sweep``), run by the worker's sweep task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from renewals.config import Settings
from renewals.worker.names import CARD_DETAILS_TASK, SWEEP_TASK

CARD_DETAILS_EVERY_S = 300


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every ``RENEWALS_SWEEP_INTERVAL`` seconds: an interval in UTC, not a wall-clock crontab.

    Running two beats is safe (the sweep's claims are constraints and row locks), just
    wasteful.
    """
    return {
        "sweep": {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=settings.sweep_interval),
            # A sweep still queued when the next one is due is redundant: let it expire.
            "options": {"expires": settings.sweep_interval},
        },
        # Cards imported without their details: the import's own message is only a hint;
        # this finds whatever a lost message or a FastStar outage left behind.
        "card_details": {
            "task": CARD_DETAILS_TASK,
            "schedule": timedelta(seconds=CARD_DETAILS_EVERY_S),
            "options": {"expires": CARD_DETAILS_EVERY_S},
        },
    }
