"""The ``renewals`` command line: thin wrappers that parse arguments and call services."""

from renewals.cli import (
    db,
    demo,
    doctor,
    operators,
    processes,
    reconcile,
    report,
    subscriptions,
)
from renewals.cli.root import main

__all__ = [
    "db",
    "demo",
    "doctor",
    "main",
    "operators",
    "processes",
    "reconcile",
    "report",
    "subscriptions",
]
