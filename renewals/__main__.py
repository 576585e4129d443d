"""``python -m renewals``: the same as the ``renewals`` command."""

from renewals.cli import main

main()
