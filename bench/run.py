"""``make bench-quick`` / ``make bench``: every benchmark figure in one report.

    python -m bench.run --quick      # under 3 minutes: no concurrency sweep, no pool
                                     # comparison, no 1,000,000-row sweep, 10,000 rows
                                     # imported instead of 100,000
    python -m bench.run              # everything, and docs/bench-concurrency.png

Writes ``bench-report.json`` in the working directory and prints a short table. The sandbox
runs as its own process; its latency L is switched on only after each run's set-up. Traffic
goes to 127.0.0.1 only, every wait is bounded, and every process started is stopped.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import backends, cost, e2e, import_rows, profile_worker, report
from bench.baseline import bare_httpx
from bench.plot import PLOT, concurrency_plot
from bench.sandbox import API_KEY, Sandbox
from bench.sandbox_throughput import free_port, run_python, run_wrk, start_sandbox
from renewals.config import Settings
from renewals.logs import configure_logging
from renewals.sandbox.client import SandboxCards

SWEEP_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
POOL_CONCURRENCY = (4, 16, 64)
POOLS = ("prefork", "threads", "gevent")
# `renewals subscriptions import` of generated rows (bench/import_rows.py); the quick run
# imports a tenth, a few tens of seconds on both databases.
IMPORT_ROWS = 100_000
IMPORT_ROWS_QUICK = 10_000


def sandbox_ceiling(seconds: float) -> dict[str, Any]:
    """bench/sandbox_throughput's mix against a sandbox of its own, no latency."""
    import shutil

    port = free_port()
    process = start_sandbox(port, None)
    try:
        cus, pm = SandboxCards(f"http://127.0.0.1:{port}/api/v1", API_KEY).save_card(
            email="ceiling@example.com", name="Ceiling", number="4242424242424242"
        )
        tool = "wrk" if shutil.which("wrk") else "python"
        runner = run_wrk if tool == "wrk" else run_python
        rate, non_2xx = runner(port, cus, pm, seconds, 64)
    finally:
        process.terminate()
        process.wait(15)
    return {"requests_per_s": round(rate), "non_2xx": non_2xx, "tool": tool, "seconds": seconds}


class Bench:
    def __init__(self, sandbox: Sandbox, log_dir: Path | None) -> None:
        self.sandbox = sandbox
        self.log_dir = log_dir
        self.runs: list[dict[str, Any]] = []
        self._bare: dict[tuple[int, float], tuple[float, int]] = {}
        self._e2e: dict[e2e.RunSpec, dict[str, Any]] = {}

    def bare(self, concurrency: int, latency_ms: float, n: int) -> tuple[float, int]:
        """(charges/s, calls) of the bare loop at C and L; measured once per (C, L)."""
        key = (concurrency, latency_ms)
        if key not in self._bare:
            self.sandbox.reset()
            cards = self.sandbox.save_cards(e2e.CARDS)
            self.sandbox.configure(latency_ms=latency_ms)
            try:
                self._bare[key] = (bare_httpx(self.sandbox, cards, concurrency, n), n)
            finally:
                self.sandbox.configure(latency_ms=0)
            print(f"  bare httpx C={concurrency} L={latency_ms:g}ms: {self._bare[key][0]:.1f}/s")
        return self._bare[key]

    def e2e(self, label: str, spec: e2e.RunSpec, *, bare: bool = True) -> dict[str, Any]:
        if spec not in self._e2e:
            print(f"  e2e {label}: {spec}", flush=True)
            started = time.monotonic()
            result = e2e.run(self.sandbox, spec, log_dir=self.log_dir)
            result["wall_s"] = round(time.monotonic() - started, 1)
            if bare:
                rate, calls = self.bare(spec.concurrency, spec.latency_ms, min(spec.n, 2000))
                result["bare_per_s"] = round(rate, 1)
                result["bare_calls"] = calls
            print(
                f"    -> {result['renewals_per_s']}/s over {result['window_s']} s, "
                f"{result['completed']}/{spec.n} done, {result['duplicate_charges']} duplicates",
                flush=True,
            )
            self._e2e[spec] = result
        result = dict(self._e2e[spec], label=label)
        self.runs.append(result)
        return result


_SWEEP_CLAIM = re.compile(r"materialised and claimed ([\d,]+) in ([\d.]+) s: ([\d,]+) rows/s")


def sweep_claim_large(rows: int = 1_000_000) -> dict[str, Any]:
    """bench/sweep_claim.py's drain over ``rows`` due subscriptions on PostgreSQL."""
    if not Path(__file__).with_name("sweep_claim.py").exists():
        return {"skipped": "bench/sweep_claim.py is not in this tree"}
    command = [
        sys.executable,
        "-m",
        "bench.sweep_claim",
        "--subscriptions",
        str(rows),
        "--database",
        "postgres",
        "--postgres-url",
        backends.POSTGRES_URL,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    found = _SWEEP_CLAIM.search(done.stdout)
    if done.returncode != 0 or found is None:
        return {"exit_code": done.returncode, "output": (done.stdout + done.stderr)[-2000:]}
    return {
        "backend": "postgres",
        "rows": int(found.group(1).replace(",", "")),
        "seconds": float(found.group(2)),
        "rows_per_s": int(found.group(3).replace(",", "")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16, help="C of the main figures")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="sandbox latency L")
    parser.add_argument("--n", type=int, default=None, help="N on PostgreSQL + Redis")
    parser.add_argument("--n-embedded", type=int, default=200, help="N on the embedded default")
    parser.add_argument("--report", type=Path, default=report.REPORT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy process logs here")
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="only the concurrency sweep and its plot (about 6 minutes here)",
    )
    args = parser.parse_args(argv)
    # Quick: 1,000 renewals are two sweep ticks today (500 per tick, 30 s apart); that and the
    # engine's ~10-20 renewals/s on this 2-core machine keep it under three minutes.
    n = args.n or (1000 if args.quick else 3000)
    c, latency = args.concurrency, args.latency_ms
    configure_logging(Settings(log_level="WARNING", log_format="console"))

    started = time.monotonic()
    out: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(),
        "machine_before": report.machine(),
        "params": {"concurrency": c, "latency_ms": latency, "n": n, "n_embedded": args.n_embedded},
        "notes": [
            "A sweep batch is 500 renewals (renewals.services.sweep.BATCH). Without the drain "
            "(before issue 10 item 1) one beat tick (RENEWALS_SWEEP_INTERVAL, default 30 s) "
            "claimed one batch, which limits runs with N > 500; with it a tick drains them all.",
            "The scheduler's state file is primed so its first tick comes at once; "
            "due_to_first_claim_s is therefore process start-up, not the tick phase "
            "(in service: up to one sweep interval more).",
            "Beat sends each sweep with expires=RENEWALS_SWEEP_INTERVAL into the one queue; "
            "behind a backlog of charge messages it expires unrun (sweeps_expired_in_queue), "
            "so ticks are lost while the worker is busy.",
            "Memory is summed over the worker's main process and pool children from "
            "/proc/<pid>/smaps_rollup: PSS (shared pages split) and RSS (counted per process).",
        ],
    }
    log_dir = args.keep_logs or Path(tempfile.mkdtemp(prefix="renewals-bench-logs-"))
    print("sandbox ceiling ...", flush=True)
    out["sandbox_ceiling"] = sandbox_ceiling(3.0 if args.quick else 10.0)
    sandbox = Sandbox.start()
    try:
        bench = Bench(sandbox, log_dir)
        if args.plot_only:
            _concurrency_sweep(bench, out, latency, args.plot)
            out["runs"] = bench.runs
            return
        main_run = bench.e2e(
            "e2e", e2e.RunSpec(backends.POSTGRES, n=n, concurrency=c, latency_ms=latency)
        )
        bench.e2e(
            "e2e-embedded",
            e2e.RunSpec(backends.EMBEDDED, n=args.n_embedded, concurrency=c, latency_ms=latency),
        )
        rate = bench.e2e(
            "rate-limit",
            e2e.RunSpec(
                backends.POSTGRES,
                n=45 if args.quick else 150,
                concurrency=4,
                latency_ms=latency,
                sandbox_rate_limit_per_s=4.0,
                client_rate_limit_per_s=3.0,
                stop_when_settled=args.quick,
                max_wait_s=40 if args.quick else 150,
                wait_for_emails=False,
            ),
            bare=False,
        )
        out["rate_limit"] = {
            k: rate.get(k)
            for k in (
                "backend",
                "concurrency",
                "latency_ms",
                "n",
                "completed",
                "sandbox_rate_limit_per_s",
                "client_rate_limit_per_s",
                "sent_per_s",
                "sent_per_busy_s",
                "sent_peak_per_s",
                "executed_per_s",
                "achieved_over_configured",
                "http_429",
                "duplicate_charges",
            )
        }
        print("cost per renewal (in-process) ...", flush=True)
        out["cost"] = {
            "pg_stat_statements_loaded": cost.pg_stat_statements_loaded(),
            backends.POSTGRES: cost.measure(sandbox, backends.POSTGRES, claimed=500, sample=50),
            backends.EMBEDDED: cost.measure(sandbox, backends.EMBEDDED, claimed=500, sample=50),
        }
        print("where the time goes (py-spy on the worker) ...", flush=True)
        out["where_the_time_goes"] = _where_the_time_goes(
            sandbox, c, latency, n=300 if args.quick else 1000
        )
        rows = IMPORT_ROWS_QUICK if args.quick else IMPORT_ROWS
        print(f"bulk import of {rows:,} rows, twice ...", flush=True)
        out["import_rows"] = import_rows.main(["--rows", str(rows)])
        if not args.quick:
            _full(bench, out, latency, args.plot)
        bare_per_s, _ = bench.bare(c, latency, min(n, 2000))
        out["headline"] = report.headline(
            e2e=main_run,
            bare_per_s=bare_per_s,
            cost=out["cost"][backends.POSTGRES],
            all_runs=bench.runs,
        )
        large = out.get("sweep_claim_1m") or {}
        if large.get("rows_per_s"):
            out["headline"]["sweep_claim_rows_per_s"] = large["rows_per_s"]
            out["headline"]["figure_context"]["sweep_claim_rows_per_s"] = {
                "backend": large["backend"],
                "n": large["rows"],
                "source": "bench/sweep_claim.py (the drain, nothing published)",
            }
        out["headline"].update(import_rows.figures(out["import_rows"]))
        out["runs"] = bench.runs
    finally:
        sandbox.stop()
        out["machine_after"] = report.machine()
        out["machine"] = out["machine_after"]
        out["wall_s"] = round(time.monotonic() - started, 1)
        out["logs"] = str(log_dir)
        report.write(out, args.report)
    print()
    print(report.summary(out))
    profile = out.get("where_the_time_goes", {})
    if profile.get("top"):
        print("\nwhere the worker's Python CPU goes (py-spy --gil, share of samples):")
        print("\n".join(profile["top"][:14]))
    print(f"\nwrote {args.report} in {out['wall_s']} s; process logs in {log_dir}")


def _where_the_time_goes(
    sandbox: Sandbox, concurrency: int, latency: float, *, n: int
) -> dict[str, Any]:
    """One more end-to-end run with py-spy sampling the worker (only stacks holding the GIL:
    Python CPU, not socket waits), summarised as the hottest frames and the inclusive share
    of the parts named in bench/profile_worker.py. Its throughput is a little below the main
    run's (the profiler's cost); it says where the time goes, not how much there is."""
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    raw = Path(tempfile.mkdtemp(prefix="renewals-profile-")) / "worker.raw"
    spec = e2e.RunSpec(backends.POSTGRES, n=n, concurrency=concurrency, latency_ms=latency)
    with profile_worker.spying(raw, 50, gil=True):
        result = e2e.run(sandbox, spec)
    return {
        "tool": "py-spy record --gil --subprocesses, 50 samples/s, on the worker",
        "backend": spec.backend,
        "n": n,
        "concurrency": concurrency,
        "latency_ms": latency,
        "renewals_per_s": result.get("renewals_per_s"),
        "cpu_ms_per_renewal": result.get("cpu_ms_per_renewal"),
        "raw": str(raw),
        "top": profile_worker.top(raw, 20).splitlines(),
    }


def _n_for(concurrency: int) -> int:
    """One sweep tick's worth (500) where it can finish in seconds; fewer at low C."""
    return 500 if concurrency >= 4 else 100 * concurrency


def _full(bench: Bench, out: dict[str, Any], latency: float, plot: Path) -> None:
    _concurrency_sweep(bench, out, latency, plot)
    _pools(bench, out, latency)
    print("1,000,000-row sweep ...", flush=True)
    out["sweep_claim_1m"] = sweep_claim_large()


def _concurrency_sweep(bench: Bench, out: dict[str, Any], latency: float, plot: Path) -> None:
    points = []
    for c in SWEEP_CONCURRENCY:
        spec = e2e.RunSpec(backends.POSTGRES, n=_n_for(c), concurrency=c, latency_ms=latency)
        points.append(bench.e2e(f"sweep-c{c}", spec))
    out["concurrency_sweep"] = points
    note = (
        "Taken on a shared 2-core machine (load before: "
        f"{out['machine_before']['loadavg'][0]}); N = 500 renewals (one sweep tick) for C >= 4."
    )
    out["plot"] = str(concurrency_plot(points, plot, note))


def _pools(bench: Bench, out: dict[str, Any], latency: float) -> None:
    pools = []
    for pool in POOLS:
        for c in POOL_CONCURRENCY:
            spec = e2e.RunSpec(
                backends.POSTGRES,
                n=_n_for(c),
                concurrency=c,
                latency_ms=latency,
                pool=pool,
                # the same run as the concurrency sweep's for the Procfile's pool (threads);
                # a bound for the rest
                max_wait_s=None if pool == "threads" else 150,
            )
            pools.append(bench.e2e(f"pool-{pool}-c{c}", spec))
    out["pools"] = pools


if __name__ == "__main__":
    main()
