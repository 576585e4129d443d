"""``python -m chaos [--quick] [--scenario NAME ...] [--json FILE]`` (``make chaos``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.infra import RabbitVhost
from chaos.run import Result, Scenario, dumps, run_scenario

FULL = {
    "postgres-redis": Scenario("postgres-redis", "postgres", "redis"),
    "rabbitmq": Scenario("rabbitmq", "postgres", "rabbitmq"),
    "embedded": Scenario(
        "embedded", "sqlite", "sqlite", flush_broker=False, restart_postgres=False
    ),
}


def quick(scenario: Scenario) -> Scenario:
    """The same flow, small and without the PostgreSQL restart: what ``make test`` runs
    (tests/chaos/test_chaos_quick.py)."""
    return Scenario(
        scenario.name,
        scenario.database,
        scenario.broker,
        subscriptions=40,
        workers=1,
        kills=3,
        flush_broker=scenario.flush_broker,
        # A restart's failed deliveries wait the outbox's 30 s retry: the full runs have it.
        restart_postgres=False,
        window_s=6.0,
        settle_timeout_s=120.0,
        latency_ms=50.0,
        seed=scenario.seed,
    )


ROWS = [
    ("subscriptions", "subscriptions"),
    ("workers", "workers"),
    ("kills", "SIGKILLs (pool children / whole workers)"),
    ("postgres_restarts", "PostgreSQL restarts"),
    ("broker_flushes", "broker flushes"),
    ("charges_executed", "charges executed"),
    ("held_unknown", "held in unknown"),
    ("held_in_review", "held in a review"),
    ("same_key_resends", "same-key resends"),
    ("emails_sent", "emails accepted by SMTP"),
    ("email_resends", "email resends, same Message-ID"),
    ("double_charges", "double charges"),
    ("unbooked", "unbooked"),
    ("stuck", "stuck"),
    ("attempts_over_limit", "attempts over the limit"),
    ("duplicate_emails", "duplicate emails"),
    ("lost_emails", "lost emails"),
    ("hygiene_leaks", "hygiene leaks"),
    ("hygiene_items_scanned", "items scanned for leaks"),
    ("settle_s", "seconds to go quiet"),
    ("duration_s", "seconds in all"),
]


def render(results: list[Result]) -> str:
    names = [r.scenario.name for r in results]
    width = max(len(label) for _, label in ROWS)
    cols = [max(len(n), 10) for n in names]
    lines = [" " * width + "  " + "  ".join(n.rjust(w) for n, w in zip(names, cols, strict=True))]
    for key, label in ROWS:
        cells = []
        for result, w in zip(results, cols, strict=True):
            value = result.figures.get(key, "-")
            if key == "kills" and key in result.figures:
                value = (
                    f"{value} ({result.figures['kills_pool_child']}/"
                    f"{result.figures['kills_worker']})"
                )
            cells.append(str(value).rjust(w))
        lines.append(label.ljust(width) + "  " + "  ".join(cells))
    verdicts = [("ok" if r.ok else "FAILED").rjust(w) for r, w in zip(results, cols, strict=True)]
    lines.append("verdict".ljust(width) + "  " + "  ".join(verdicts))
    for result in results:
        if result.error:
            lines.append(f"\n{result.scenario.name}: {result.error}")
        if result.check and not result.check.ok:
            lines.append(f"\n{result.scenario.name} violations:")
            lines += [f"  {v.kind}: {v.subject}: {v.detail}" for v in result.check.violations[:30]]
        if result.hygiene and not result.hygiene.ok:
            lines.append(f"\n{result.scenario.name} hygiene: {dict(result.hygiene.leaks)}")
            lines += [f"  {e}" for e in result.hygiene.examples]
        if result.run_dir:
            lines.append(f"{result.scenario.name}: logs kept in {result.run_dir}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, few kills")
    parser.add_argument("--scenario", action="append", choices=sorted(FULL), default=None)
    parser.add_argument("--subscriptions", type=int, default=None)
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--worker-args",
        default=None,
        help="options for `renewals worker` (default: the Procfile's), e.g. "
        "'--pool threads --concurrency 16'",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    names = args.scenario or list(FULL)
    results = []
    for name in names:
        scenario = FULL[name]
        if scenario.broker == "rabbitmq" and not RabbitVhost.available():
            print(f"[chaos] {name}: skipped, no RabbitMQ with rabbitmqctl on this machine")
            continue
        if args.quick:
            scenario = quick(scenario)
        overrides = {
            "subscriptions": args.subscriptions,
            "kills": args.kills,
            "seed": args.seed,
        }
        scenario = Scenario(
            **{
                **scenario.__dict__,
                **{k: v for k, v in overrides.items() if v is not None},
            }
        )
        worker_args = args.worker_args.split() if args.worker_args else None
        results.append(run_scenario(scenario, worker_args=worker_args, keep=args.keep))
    print()
    print(render(results))
    if args.json:
        args.json.write_text(dumps(results))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
