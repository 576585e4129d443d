"""The FastStar client that reports every call to the metrics.

The client already reports each request once, with its outcome and start time, through
``_log``; this subclass adds the metrics there, so the charge path itself knows nothing of
metrics and the client package stays free of the rest of the service.
"""

from __future__ import annotations

import time
from typing import Any

from renewals.faststar import FastStarClient
from renewals.metrics import observe_faststar_call


class MeteredFastStarClient(FastStarClient):
    def _log(self, method: str, path: str, **details: Any) -> None:
        seconds = time.perf_counter() - details["started"]
        super()._log(method, path, **details)
        observe_faststar_call(
            method,
            path,
            http_status=details["status"],
            seconds=seconds,
            outcome=details["outcome"],
        )
