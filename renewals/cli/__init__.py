"""The ``renewals`` command line: thin wrappers that parse arguments and call services."""

from renewals.cli import commands, db, demo, operators, processes, reconcile, subscriptions
from renewals.cli.root import main

__all__ = ["commands", "db", "demo", "main", "operators", "processes", "reconcile", "subscriptions"]
