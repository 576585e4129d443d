"""``python -m chaos.crash_points``: the crash-point and visibility-timeout scenarios in full.

Each of the seven recovery points (``renewals.crashpoints``) is armed for 20 crashes on its
own 20 renewals, one after another on one long-lived prefork worker (PostgreSQL, Redis, the
sandbox, a real scheduler); then the visibility-timeout scenario. The scenarios are the
pytest modules ``tests/chaos/test_crash_points.py`` and ``test_visibility_timeout.py``
(``make test`` runs their fast subset); this runs them with ``RENEWALS_CHAOS_FULL=1`` and
prints each scenario's figures. ``make chaos`` runs it after ``python -m chaos``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODULES = ("tests/chaos/test_crash_points.py", "tests/chaos/test_visibility_timeout.py")
COLUMNS = (
    ("runs", "runs"),
    ("crashes_fired", "crashes"),
    ("charges_executed", "charges"),
    ("booked", "booked"),
    ("double_charges", "double"),
    ("unbooked", "unbooked"),
    ("stuck", "stuck"),
    ("emails_received", "emails"),
    ("duplicate_emails", "dup emails"),
    ("deliveries", "deliveries"),
    ("seconds", "seconds"),
)


def render(rows: list[dict[str, object]]) -> str:
    names = [str(row["scenario"]) for row in rows]
    width = max([len("scenario"), *map(len, names)])
    lines = ["scenario".ljust(width) + "".join(label.rjust(11) for _, label in COLUMNS)]
    for name, row in zip(names, rows, strict=True):
        lines.append(
            name.ljust(width) + "".join(str(row.get(k, "-")).rjust(11) for k, _ in COLUMNS)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.crash_points", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="crashes per point (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) / "figures.jsonl"
        env = {
            **os.environ,
            "RENEWALS_CHAOS_FULL": "1",
            "RENEWALS_CHAOS_RUNS": str(args.runs),
            "RENEWALS_CHAOS_FIGURES": str(figures),
            "RENEWALS_REQUIRE_SERVICES": "1",
        }
        command = [sys.executable, "-m", "pytest", *MODULES, "-q", "-p", "no:cacheprovider"]
        status = subprocess.call(command, env=env)
        rows = (
            [json.loads(line) for line in figures.read_text().splitlines()]
            if figures.exists()
            else []
        )
    print()
    print(render(rows) if rows else "no scenario reported figures")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
