"""``python -m renewals``: the same as the ``renewals`` command."""

from renewals.launch import main

main()
