"""A stateful local FastStar sandbox: same paths, envelope and ids as FastStar's API.

Part A of ``docs/faststar.md`` (FastStar's documented behaviour) is implemented as written;
everything FastStar leaves open (test cards, idempotency keys, rate limits, checkout
session lifecycle, webhook retries) follows Part B, our conventions, and is labelled so in
each module. Entry points: ``server.serve`` (CLI), ``testing.running_sandbox`` (tests),
``client.save_card`` (CLI helper), ``python -m renewals.sandbox``.
"""
