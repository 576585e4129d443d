"""End to end: N subscriptions due at once, swept and charged by the real processes.

One run:

1. set-up, before the clock and without latency: a fresh database (migrated), a handful of
   cards saved in the sandbox, N subscriptions seeded in bulk (due far in the future);
2. ``renewals worker --pool threads --concurrency C`` (the Procfile's worker; another
   ``--pool`` for the pool comparison) until it is ready; then the sandbox's latency (and
   rate limit, if any) is switched on through its config endpoint and the /proc sampler
   starts;
3. every subscription falls due at once (one UPDATE), and ``renewals scheduler`` starts.
   Its schedule file says the last sweep ran one interval ago, as after a restart, so its
   first tick comes at once instead of one ``RENEWALS_SWEEP_INTERVAL`` later;
4. wait (bounded) until every renewal has succeeded, then stop both processes.

Figures come from the database: the window runs from the first renewal materialised
(``min(renewals.created_at)``) to the last outcome committed
(``max(charge_attempts.finished_at)``); the time from due to that first claim is reported
beside it. Duplicates come from the sandbox's executed-charge ledger.
"""

from __future__ import annotations

import re
import shelve
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from bench import backends
from bench.processes import Process, Sampler, start_scheduler, start_worker, stop_all
from bench.sandbox import Sandbox
from bench.seed import make_due, seed_subscriptions
from renewals.config import Settings
from renewals.domain.states import OutboxStatus, RenewalStatus
from renewals.models import ChargeAttempt, OutboxMessage, Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.scheduler.beat import beat_schedule
from renewals.worker.celery_app import make_celery

CARDS = 16
SWEEP_BATCH = 500  # renewals.services.sweep.BATCH: what one sweep step materialises and claims


@dataclass(frozen=True)
class RunSpec:
    backend: str
    n: int
    concurrency: int
    latency_ms: float
    pool: str = "threads"  # the Procfile's
    sandbox_rate_limit_per_s: float | None = None
    client_rate_limit_per_s: float | None = None
    max_wait_s: float | None = None
    """Stop waiting after this long past the due instant (None: long enough for every tick)."""
    stop_when_settled: bool = False
    """Stop once no renewal is pending or charging, even if some wait for a later retry."""
    wait_for_emails: bool = True
    """Keep the worker (and the CPU sampler) running until the receipts are delivered too:
    a renewal's CPU includes its receipt. The window still ends at the last charge."""


def prime_beat_schedule(cwd: Path, settings: Settings) -> None:
    """Write the scheduler's state file as if its last sweep ran one interval ago."""
    from celery.beat import PersistentScheduler

    app = make_celery(settings)
    app.conf.beat_schedule = beat_schedule(settings)
    path = cwd / "var" / "celerybeat-schedule"
    path.parent.mkdir(parents=True, exist_ok=True)
    scheduler = PersistentScheduler(app=app, schedule_filename=str(path))
    earlier = app.now() - timedelta(seconds=settings.sweep_interval + 1)
    for entry in scheduler.schedule.values():
        entry.last_run_at = earlier
    scheduler.sync()
    scheduler.close()
    with shelve.open(str(path)) as store:  # check it really was written
        assert all(e.last_run_at == earlier for e in store["entries"].values())


def _progress(engine: Engine) -> tuple[int, int, int]:
    """(renewals succeeded, renewals no longer pending or charging, renewals materialised)."""
    busy = (RenewalStatus.PENDING, RenewalStatus.CHARGING)
    with unit_of_work(engine) as session:
        done = session.scalar(select(func.count()).where(Renewal.status == RenewalStatus.SUCCEEDED))
        settled = session.scalar(select(func.count()).where(Renewal.status.not_in(busy)))
        materialised = session.scalar(select(func.count()).select_from(Renewal))
    return done or 0, settled or 0, materialised or 0


def _emails_waiting(engine: Engine) -> int:
    waiting = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)
    with unit_of_work(engine) as session:
        count = session.scalar(select(func.count()).where(OutboxMessage.status.in_(waiting)))
    return count or 0


def _emails_sent(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        count = session.scalar(
            select(func.count()).where(OutboxMessage.status == OutboxStatus.SENT.value)
        )
    return count or 0


def _figures(engine: Engine) -> dict[str, Any]:
    with unit_of_work(engine) as session:
        first_claim, renewals = session.execute(
            select(func.min(Renewal.created_at), func.count(Renewal.id))
        ).one()
        first_attempt, first_sent, last_done, attempts = session.execute(
            select(
                func.min(ChargeAttempt.created_at),
                func.min(ChargeAttempt.sent_at),
                func.max(ChargeAttempt.finished_at),
                func.count(ChargeAttempt.id),
            )
        ).one()
        http_429 = session.scalar(select(func.count()).where(ChargeAttempt.http_status == 429))
        sends = session.scalar(select(func.sum(ChargeAttempt.sends)))
        # (dict() would take a Result for a mapping: it has keys())
        by_status = {
            status: count
            for status, count in session.execute(
                select(Renewal.status, func.count()).group_by(Renewal.status)
            ).tuples()
        }
        keys = {
            key: renewal_id
            for key, renewal_id in session.execute(
                select(ChargeAttempt.idempotency_key, ChargeAttempt.renewal_id)
            ).tuples()
        }
        sent_times = [
            t
            for (t,) in session.execute(
                select(ChargeAttempt.sent_at).where(ChargeAttempt.sent_at.is_not(None))
            )
        ]
    return {
        "first_claim": first_claim,
        "first_attempt": first_attempt,
        "first_sent": first_sent,
        "last_done": last_done,
        "renewals": renewals,
        "attempts": attempts,
        "http_429": http_429 or 0,
        "sends": sends or 0,
        "by_status": {str(getattr(k, "value", k)): v for k, v in by_status.items()},
        "keys": keys,
        "sent_times": sorted(sent_times),
    }


_SWEEP_DONE = re.compile(r"renewals\.sweep\[[^\]]+\] succeeded in ([\d.]+)s")
_TASK_DONE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in")


def tasks_run(worker_log: str) -> dict[str, int]:
    """Tasks that succeeded, by name, from the worker's log."""
    counts: dict[str, int] = {}
    for name in _TASK_DONE.findall(worker_log):
        counts[name] = counts.get(name, 0) + 1
    return counts


def sweep_log_figures(worker_log: str) -> dict[str, Any]:
    """Sweeps the worker ran (and how long each task took, publishing included), and sweeps
    that expired while queued behind other work (beat sends them with expires=interval)."""
    durations = [float(m) for m in _SWEEP_DONE.findall(worker_log)]
    return {
        "sweeps_run": len(durations),
        "sweeps_expired_in_queue": worker_log.count("Discarding revoked task: renewals.sweep"),
        "sweep_task_s_max": round(max(durations), 2) if durations else None,
    }


def charge_calls_per_second(sent_times: list[datetime]) -> dict[str, Any]:
    """Charge requests per wall-clock second from the attempts' ``sent_at`` (429s included):
    the busiest second, and the mean over the seconds in which any was sent. An attempt
    re-sent later keeps only its last send, so with retries this is a lower bound."""
    per_second: dict[str, int] = {}
    for sent in sent_times:
        second = sent.isoformat()[:19]
        per_second[second] = per_second.get(second, 0) + 1
    if not per_second:
        return {"sent_peak_per_s": None, "sent_per_busy_s": None}
    return {
        "sent_peak_per_s": max(per_second.values()),
        "sent_per_busy_s": round(sum(per_second.values()) / len(per_second), 2),
    }


def duplicates(ledger: list[dict[str, Any]], keys: dict[str, int]) -> dict[str, int]:
    """Executed charges per renewal from the sandbox's ledger, matched by idempotency key."""
    per_renewal: dict[int, int] = {}
    per_key: dict[str, int] = {}
    unmatched = 0
    for charge in ledger:
        key = charge.get("idempotency_key")
        if key is None or key not in keys:
            unmatched += 1
            continue
        per_key[key] = per_key.get(key, 0) + 1
        per_renewal[keys[key]] = per_renewal.get(keys[key], 0) + 1
    return {
        "executed_charges": sum(per_renewal.values()),
        "duplicate_charges": sum(c - 1 for c in per_renewal.values() if c > 1),
        "keys_executed_twice": sum(1 for c in per_key.values() if c > 1),
        "unmatched_charges": unmatched,
    }


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def run(sandbox: Sandbox, spec: RunSpec, *, log_dir: Path | None = None) -> dict[str, Any]:
    """One end-to-end run (see the module docstring); the processes are always stopped."""
    with tempfile.TemporaryDirectory(prefix="renewals-bench-") as tmp:
        cwd = Path(tmp)
        with backends.backend(spec.backend, cwd) as backend:
            try:
                return _run(sandbox, spec, backend, cwd)
            finally:
                if log_dir is not None:
                    _keep_logs(cwd, log_dir, spec)


def _keep_logs(cwd: Path, log_dir: Path, spec: RunSpec) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{spec.backend}-{spec.pool}-c{spec.concurrency}-n{spec.n}"
    for name in ("worker", "scheduler"):
        source = cwd / f"{name}.log"
        if source.exists():
            (log_dir / f"{tag}-{name}.log").write_bytes(source.read_bytes()[-5_000_000:])


def _run(sandbox: Sandbox, spec: RunSpec, backend: backends.Backend, cwd: Path) -> dict[str, Any]:
    env = {"RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url, **backend.env}
    if spec.client_rate_limit_per_s is not None:
        env["RENEWALS_FASTSTAR_RATE_LIMIT_PER_S"] = str(spec.client_rate_limit_per_s)
    settings = (
        Settings(database_url=backend.database_url)
        if backend.broker_url is None
        else Settings(database_url=backend.database_url, broker_url=backend.broker_url)
    )
    (cwd / "var").mkdir(parents=True, exist_ok=True)
    upgrade(backend.database_url)
    engine = create_db_engine(backend.database_url)
    worker: Process | None = None
    scheduler: Process | None = None
    sampler: Sampler | None = None
    try:
        # 1. set-up: no latency, no clock
        sandbox.reset()
        cards = sandbox.save_cards(CARDS)
        seeded = time.perf_counter()
        seed_subscriptions(engine, cards, spec.n)
        seed_s = time.perf_counter() - seeded
        prime_beat_schedule(cwd, settings)
        # 2. the worker, then latency
        worker = start_worker(env, cwd, concurrency=spec.concurrency, pool=spec.pool)
        sandbox.configure(
            latency_ms=spec.latency_ms, rate_limit_per_s=spec.sandbox_rate_limit_per_s
        )
        sampler = Sampler(worker.pid)
        sampler.start()
        # 3. all due at once; the scheduler ticks at once
        due = make_due(engine)
        scheduler = start_scheduler(env, cwd)
        # 4. bounded wait
        ticks = -(-spec.n // SWEEP_BATCH)
        max_wait = spec.max_wait_s or (
            60 + ticks * settings.sweep_interval + 3 * spec.n * spec.latency_ms / 1000
        )
        started = time.monotonic()
        deadline = started + max_wait
        done = 0
        stalled = False
        while time.monotonic() < deadline:
            done, settled, materialised = _progress(engine)
            if done >= spec.n or (spec.stop_when_settled and settled >= spec.n):
                break
            # The first tick comes at once: nothing materialised after two intervals means
            # the worker is not running the sweep at all.
            if not materialised and time.monotonic() - started > 2 * settings.sweep_interval:
                stalled = True
                break
            if worker.popen.poll() is not None or scheduler.popen.poll() is not None:
                raise RuntimeError("a process exited:\n" + worker.output()[-3000:])
            time.sleep(0.5)
        while (
            spec.wait_for_emails
            and not stalled
            and time.monotonic() < deadline
            and _emails_waiting(engine)
        ):
            if worker.popen.poll() is not None:
                raise RuntimeError("the worker exited:\n" + worker.output()[-3000:])
            time.sleep(0.5)
        sampler.stop()
        peak_pss_kb, peak_rss_kb = sampler.peak_pss_kb, sampler.peak_rss_kb
        cpu_s, processes = sampler.cpu_s, sampler.processes
        main_cpu_s = sampler.main_cpu_s
        sampler = None
        stop_all(scheduler, worker)
        worker_log = worker.output()
        sweeps = sweep_log_figures(worker_log)
        tasks = tasks_run(worker_log)
        scheduler = worker = None
        figures = _figures(engine)
        figures["emails_sent"] = _emails_sent(engine)
    finally:
        if sampler is not None:
            sampler.stop()
        stop_all(scheduler, worker)
        engine.dispose()
    ledger = duplicates(sandbox.ledger(), figures["keys"])
    sandbox.configure(latency_ms=0, rate_limit_per_s=None)
    window = _seconds(figures["last_done"], figures["first_claim"])
    result: dict[str, Any] = {
        "backend": spec.backend,
        "pool": spec.pool,
        "concurrency": spec.concurrency,
        "latency_ms": spec.latency_ms,
        "n": spec.n,
        "completed": done,
        "complete": done >= spec.n,
        "stalled": stalled,
        "seed_s": round(seed_s, 2),
        "window_s": round(window, 3) if window else None,
        "renewals_per_s": round(done / window, 2) if window else None,
        "ideal_per_s": round(spec.concurrency / (spec.latency_ms / 1000), 1)
        if spec.latency_ms
        else None,
        "due_to_first_claim_s": _round(_seconds(figures["first_claim"], due)),
        "first_claim_to_first_charge_s": _round(
            _seconds(figures["first_attempt"], figures["first_claim"])
        ),
        "sweep_batches": -(-spec.n // SWEEP_BATCH),
        **sweeps,
        "renewals_by_status": figures["by_status"],
        "attempts": figures["attempts"],
        "http_429": figures["http_429"],
        "worker_processes": processes,
        "worker_cpu_s": round(cpu_s, 2),
        "cpu_ms_per_renewal": round(1000 * cpu_s / done, 2) if done else None,
        "emails_sent": figures["emails_sent"],
        "tasks_run": tasks,
        "tasks_per_renewal": round(sum(tasks.values()) / done, 2) if done else None,
        "worker_main_cpu_s": round(main_cpu_s, 2),
        "main_cpu_ms_per_task": round(1000 * main_cpu_s / sum(tasks.values()), 2)
        if tasks
        else None,
        "worker_peak_pss_mb": round(peak_pss_kb / 1024, 1),
        "worker_peak_rss_mb": round(peak_rss_kb / 1024, 1),
        **ledger,
    }
    if spec.client_rate_limit_per_s is not None or spec.sandbox_rate_limit_per_s is not None:
        result.update(_rate_figures(spec, figures["sent_times"], figures["sends"], ledger))
        calls = charge_calls_per_second(figures["sent_times"])
        result.update(calls)
        if calls["sent_per_busy_s"] and spec.client_rate_limit_per_s:
            result["achieved_over_configured"] = round(
                calls["sent_per_busy_s"] / spec.client_rate_limit_per_s, 2
            )
    return result


def _rate_figures(
    spec: RunSpec, sent_times: list[datetime], sends: int, ledger: dict[str, int]
) -> dict[str, Any]:
    """Charge requests sent per second by the engine (429s included), from the first send to
    the last (retries wait for a later sweep, so this average includes idle time; the
    per-second counts replace achieved_over_configured when there are any)."""
    span = _seconds(sent_times[-1], sent_times[0]) if len(sent_times) > 1 else None
    sent_per_s = (sends - 1) / span if span else None
    configured = spec.client_rate_limit_per_s
    return {
        "sandbox_rate_limit_per_s": spec.sandbox_rate_limit_per_s,
        "client_rate_limit_per_s": configured,
        "sent_per_s": _round(sent_per_s),
        "achieved_over_configured": _round(sent_per_s / configured)
        if sent_per_s and configured
        else None,
        "executed_per_s": _round(ledger["executed_charges"] / span) if span else None,
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def utc_now() -> datetime:
    return datetime.now(UTC)
