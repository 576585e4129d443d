"""How long the model runs: a fast profile inside ``make test``, a long one on request
(``HYPOTHESIS_PROFILE=chaos``, which ``make model-long`` sets; it also runs on PostgreSQL)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("HYPOTHESIS_PROFILE", "") == "chaos"

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
FAST = settings(max_examples=30, stateful_step_count=50, **_COMMON)  # type: ignore[arg-type]
CHAOS = settings(max_examples=400, stateful_step_count=60, **_COMMON)  # type: ignore[arg-type]
MODEL_SETTINGS = CHAOS if LONG else FAST
# pytest-timeout's limit for the whole run (0: none, for the long runs).
TIMEOUT_S = 0 if LONG else 300
# RENEWALS_MODEL_EXAMPLES=N overrides the number of examples (exploring, reproducing).
if os.environ.get("RENEWALS_MODEL_EXAMPLES"):
    TIMEOUT_S = 0
    MODEL_SETTINGS = settings(
        MODEL_SETTINGS, max_examples=int(os.environ["RENEWALS_MODEL_EXAMPLES"])
    )
BACKENDS = ["sqlite", "postgres"] if LONG else ["sqlite"]
