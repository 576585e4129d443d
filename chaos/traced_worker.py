"""``python -m chaos.traced_worker [worker options]``: ``renewals worker`` with every task's
arguments appended to ``$CHAOS_TASK_LOG`` (one JSON object a line) as the task starts, so
the hygiene scan sees exactly what went through the broker."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from celery.signals import task_prerun


@task_prerun.connect
def _record_arguments(sender: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    path = os.environ.get("CHAOS_TASK_LOG")
    if not path:
        return
    row = {"task": getattr(sender, "name", str(sender)), "args": args, "kwargs": kwargs}
    # One write of one line in append mode: lines from several processes never interleave.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=str) + "\n")


def main() -> None:
    from renewals.cli import main as renewals

    renewals(["worker", *sys.argv[1:]], prog_name="renewals")


if __name__ == "__main__":
    main()
