"""Chaos runs: the whole engine in real processes, under failures, judged by the checker.

``python -m chaos`` (``make chaos``) runs each scenario: a private PostgreSQL cluster and
redis-server (or RabbitMQ on a vhost of its own, or the embedded SQLite default), the
sandbox with a failure mix switched on, worker processes SIGKILLed at random and restarted,
two schedulers, a webhook receiver fed duplicated and reordered events, a broker flush and
a PostgreSQL restart mid-run. Once the run is quiet, :mod:`renewals.checker` compares the
books with the sandbox's executed charges and :mod:`chaos.hygiene` scans every log line,
task argument, outbox error and audit row for secrets, card numbers and customer emails.
"""
