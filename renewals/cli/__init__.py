"""The ``renewals`` command line: thin wrappers that parse arguments and call services."""

from renewals.cli import (
    commands,
    db,
    demo,
    doctor,
    imports,
    metrics,
    operators,
    processes,
    reconcile,
    report,
    subscriptions,
)
from renewals.cli.root import main

__all__ = [
    "commands",
    "db",
    "demo",
    "doctor",
    "imports",
    "main",
    "metrics",
    "operators",
    "processes",
    "reconcile",
    "report",
    "subscriptions",
]
