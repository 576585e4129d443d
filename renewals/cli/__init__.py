"""The ``renewals`` command line: thin wrappers that parse arguments and call services."""

from renewals.cli import db, processes, subscriptions
from renewals.cli.root import main

__all__ = ["db", "main", "processes", "subscriptions"]
