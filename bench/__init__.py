"""Benchmarks: ``make bench-quick`` / ``make bench`` (``python -m bench.run``).

Modules: :mod:`bench.sandbox` (the sandbox as its own process), :mod:`bench.processes`
(real ``renewals worker`` / ``renewals scheduler`` processes and their /proc figures),
:mod:`bench.backends` (PostgreSQL + Redis, or the embedded default), :mod:`bench.seed`,
:mod:`bench.baseline` (bare httpx loop), :mod:`bench.e2e`, :mod:`bench.cost`,
:mod:`bench.report`, :mod:`bench.plot`; :mod:`bench.sandbox_throughput` is also a script.
"""
