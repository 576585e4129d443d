"""The ``renewals`` command line: thin wrappers that parse arguments and call services."""

from renewals.cli import (
    check,
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
    "check",
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
