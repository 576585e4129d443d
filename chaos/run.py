"""One chaos scenario from start to verdict (see the package docstring)."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from chaos.hygiene import HygieneReport, Scanner, needles
from chaos.infra import PrivatePostgres, PrivateRedis, RabbitVhost, free_port, wait_for_port
from chaos.procs import ROOT, Proc, pool_of, procfile_worker_args, python
from chaos.seed import seed
from renewals.checker import CheckReport, check, fetch_ledger, read_deliveries
from renewals.config import Settings
from renewals.domain.states import RenewalStatus
from renewals.models import InboxEvent, OutboxMessage, PaymentReview, Renewal
from renewals.models.db import create_db_engine, unit_of_work

Database = Literal["postgres", "sqlite"]
Broker = Literal["redis", "rabbitmq", "sqlite"]

# Short leases and intervals so that a run settles in a minute instead of hours.
LEASE_S = 10
SWEEP_S = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    database: Database
    broker: Broker
    subscriptions: int = 1000
    workers: int = 4
    kills: int = 30
    flush_broker: bool = True
    restart_postgres: bool = True
    schedulers: int = 2
    window_s: float = 45.0
    """Kills, the flush and the restart are spread over this long from the first sweep."""
    settle_timeout_s: float = 480.0
    latency_ms: float = 100.0
    seed: int = 11


@dataclass
class Result:
    scenario: Scenario
    figures: dict[str, Any] = field(default_factory=dict)
    check: CheckReport | None = None
    hygiene: HygieneReport | None = None
    error: str | None = None
    run_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.check is not None
            and self.check.ok
            and self.hygiene is not None
            and self.hygiene.ok
        )


def _say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Run:
    def __init__(self, scenario: Scenario, directory: Path, worker_args: list[str]) -> None:
        self.s = scenario
        self.dir = directory
        self.rng = random.Random(scenario.seed)
        self.worker_args = worker_args
        self.pool = pool_of(worker_args)
        self.token = secrets.token_hex(6)
        self.api_key = f"sk_test_chaos{secrets.token_hex(12)}"
        self.webhook_secret = f"whsec_chaos{secrets.token_hex(12)}"
        self.postgres: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.rabbit: RabbitVhost | None = None
        self.procs: list[Proc] = []
        self.workers: list[Proc] = []
        self.kills = {"pool_child": 0, "worker": 0}
        self.task_log = directory / "task-args.jsonl"
        self.mail_log = directory / "mail.jsonl"
        self.logs = directory / "logs"

    # -- set-up ---------------------------------------------------------------------------

    def start_servers(self) -> tuple[str, str]:
        if self.s.database == "postgres":
            self.postgres = PrivatePostgres(self.dir / "pg")
            self.postgres.start()
            database_url = self.postgres.url
        else:
            database_url = f"sqlite:///{self.dir}/renewals.db"
        if self.s.broker == "redis":
            self.redis = PrivateRedis(self.dir / "redis")
            self.redis.start()
            broker_url = self.redis.url
        elif self.s.broker == "rabbitmq":
            self.rabbit = RabbitVhost(f"renewals-chaos-{self.token}")
            self.rabbit.start()
            broker_url = self.rabbit.url
        else:
            broker_url = f"sqla+sqlite:///{self.dir}/broker.db"
        return database_url, broker_url

    def environment(self, database_url: str, broker_url: str, ports: dict[str, int]) -> None:
        self.env_vars = {
            "RENEWALS_ENV": "development",
            "RENEWALS_LOG_FORMAT": "json",
            "RENEWALS_LOG_LEVEL": "INFO",
            "RENEWALS_DATABASE_URL": database_url,
            "RENEWALS_BROKER_URL": broker_url,
            "RENEWALS_FASTSTAR_BASE_URL": f"http://127.0.0.1:{ports['sandbox']}/api/v1",
            "RENEWALS_FASTSTAR_API_KEY": self.api_key,
            "RENEWALS_FASTSTAR_WEBHOOK_SECRET": self.webhook_secret,
            "RENEWALS_FASTSTAR_READ_TIMEOUT": "5",
            "RENEWALS_MAIL_URL": f"smtp://127.0.0.1:{ports['smtp']}",
            "RENEWALS_LEASE_SECONDS": str(LEASE_S),
            "RENEWALS_SWEEP_INTERVAL": str(SWEEP_S),
            "RENEWALS_UNKNOWN_RECHECK_DELAYS": "2s,10s,30s",
            "RENEWALS_TRUST_IDEMPOTENCY_KEYS": "true",
            "RENEWALS_CHECKOUT_POLL_INTERVAL": "0",
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
        self.env = {
            **base,
            **self.env_vars,
            "PYTHONPATH": str(ROOT),
            "CHAOS_TASK_LOG": str(self.task_log),
        }
        self.settings = Settings(
            database_url=database_url,
            broker_url=broker_url,
            faststar_base_url=self.env_vars["RENEWALS_FASTSTAR_BASE_URL"],
            faststar_api_key=SecretStr(self.api_key),
            faststar_webhook_secret=SecretStr(self.webhook_secret),
            lease_seconds=LEASE_S,
            sweep_interval=SWEEP_S,
            mail_url=self.env_vars["RENEWALS_MAIL_URL"],
        )

    def proc(self, name: str, argv: list[str], ready: str | None = None) -> Proc:
        process = Proc(
            name=name,
            argv=argv,
            env=self.env,
            cwd=self.dir / "cwd" / name,
            log=self.logs / f"{name}.log",
            ready_marker=ready,
        )
        self.procs.append(process)
        process.start()
        return process

    def configure_sandbox(self, webhook_port: int) -> None:
        config = {
            "latency_ms": self.s.latency_ms,
            "mix_decline": 0.05,
            "mix_authentication": 0.02,
            "mix_lost_response": 0.02,
            "mix_error_after_charge": 0.01,
            "mix_seed": self.s.seed,
            "webhook_url": f"http://127.0.0.1:{webhook_port}/webhooks/faststar",
            "webhook_secret": self.webhook_secret,
            "webhook_duplicates": True,
            "webhook_reorder": True,
        }
        url = f"{self.settings.faststar_base_url}/sandbox/config"
        httpx.post(url, json=config, timeout=10).raise_for_status()

    # -- chaos ----------------------------------------------------------------------------

    def kill_one(self) -> None:
        worker = self.rng.choice(self.workers)
        children = worker.children() if self.pool == "prefork" else []
        if children and self.rng.random() < 0.6:
            os.kill(self.rng.choice(children), 9)
            self.kills["pool_child"] += 1
            return
        worker.kill_group()
        self.kills["worker"] += 1
        worker.start()  # a supervisor brings it back

    def chaos(self) -> None:
        """Kills, one broker flush and one PostgreSQL restart at random moments."""
        s = self.s
        start = time.monotonic()
        events: list[tuple[float, str]] = [
            (self.rng.uniform(1.0, s.window_s), "kill") for _ in range(s.kills)
        ]
        if s.flush_broker and (self.redis or self.rabbit):
            events.append((s.window_s * self.rng.uniform(0.3, 0.5), "flush"))
        if s.restart_postgres and self.postgres:
            events.append((s.window_s * self.rng.uniform(0.5, 0.7), "restart"))
        for at, what in sorted(events):
            time.sleep(max(0.0, start + at - time.monotonic()))
            if what == "kill":
                self.kill_one()
            elif what == "flush":
                _say("broker flushed")
                (self.redis or self.rabbit).flush()  # type: ignore[union-attr]
            else:
                _say("PostgreSQL restarting")
                assert self.postgres is not None
                self.postgres.restart()
        for worker in self.workers:  # a worker that died on its own is restarted too
            if not worker.alive():
                worker.start()

    # -- quiet ----------------------------------------------------------------------------

    def progress(self, engine: Engine) -> tuple[Any, ...]:
        """Everything whose change means the run is still moving."""
        with unit_of_work(engine) as session:
            by_status = Counter[str]()
            for status, count in session.execute(
                select(Renewal.status, func.count()).group_by(Renewal.status)
            ).tuples():
                # A same-key re-send of an unknown attempt passes through charging and back:
                # not progress, so the two count as one.
                by_status["unknown" if status == RenewalStatus.CHARGING else status] += count
            renewals = sorted(by_status.items())
            outbox = sorted(
                session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                )
                .tuples()
                .all()
            )
            inbox = sorted(
                session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))
                .tuples()
                .all()
            )
            reviews = session.scalar(select(func.count()).select_from(PaymentReview))
        ledger = len(fetch_ledger(self.settings.faststar_base_url))
        return (tuple(renewals), tuple(outbox), tuple(inbox), reviews, ledger)

    def wait_quiet(self, engine: Engine) -> float:
        """Until nothing has moved for a lease and a couple of sweeps."""
        settle = LEASE_S + 2 * SWEEP_S
        deadline = time.monotonic() + self.s.settle_timeout_s
        started = time.monotonic()
        last: tuple[Any, ...] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                now = self.progress(engine)
            except Exception as exc:  # the database restarting; look again
                _say(f"progress unreadable ({type(exc).__name__}); retrying")
                time.sleep(1)
                continue
            if now != last:
                last, since = now, time.monotonic()
            if time.monotonic() - since >= settle:
                return time.monotonic() - started
            time.sleep(1)
        raise TimeoutError(f"the run did not go quiet in {self.s.settle_timeout_s:.0f} s")

    def stop_engine(self) -> None:
        """Stop our processes (not the sandbox and the SMTP sink: the checker asks them)."""
        for process in reversed(self.procs):
            if process.name not in ("sandbox", "smtp"):
                process.stop()

    def stop(self) -> None:
        for process in reversed(self.procs):
            process.stop()
        for server in (self.redis, self.rabbit, self.postgres):
            if server is not None:
                server.stop()


def run_scenario(
    scenario: Scenario,
    *,
    worker_args: list[str] | None = None,
    keep: bool = False,
    say: Callable[[str], None] = _say,
) -> Result:
    directory = Path(tempfile.mkdtemp(prefix=f"renewals-chaos-{scenario.name}-"))
    directory.chmod(0o755)  # the postgres user must reach its cluster's directory inside
    args = worker_args if worker_args is not None else procfile_worker_args()
    run = Run(scenario, directory, args)
    result = Result(scenario, run_dir=directory)
    began = time.monotonic()
    try:
        _execute(run, result, say)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"{scenario.name}: {result.error}")
    finally:
        run.stop()
        result.figures["duration_s"] = round(time.monotonic() - began, 1)
        if result.ok and not keep:
            shutil.rmtree(directory, ignore_errors=True)
            result.run_dir = None
    return result


def _execute(run: Run, result: Result, say: Callable[[str], None]) -> None:
    s = run.s
    database_url, broker_url = run.start_servers()
    ports = {"sandbox": free_port(), "smtp": free_port(), "webhooks": free_port()}
    run.environment(database_url, broker_url, ports)
    run.logs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        python("-m", "renewals", "db", "upgrade"),
        env=run.env,
        cwd=run.dir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    run.proc("sandbox", python("-m", "renewals.sandbox", "--port", str(ports["sandbox"])))
    run.proc(
        "smtp",
        python("-m", "chaos.smtp_sink", "--port", str(ports["smtp"]), "--out", str(run.mail_log)),
    )
    wait_for_port(ports["sandbox"], "the sandbox")
    wait_for_port(ports["smtp"], "the SMTP sink")
    engine = create_db_engine(database_url)
    try:
        say(f"{s.name}: seeding {s.subscriptions} subscriptions due now")
        emails = seed(engine, run.settings, s.subscriptions, run.token)
        # After the seeding: its thousands of calls need neither the latency nor webhooks.
        run.configure_sandbox(ports["webhooks"])
        run.proc(
            "webhooks",
            python("-m", "renewals", "webhooks", "--port", str(ports["webhooks"])),
        )
        wait_for_port(ports["webhooks"], "the webhook receiver")
        for n in range(s.workers):
            worker = run.proc(
                f"worker{n}",
                python("-m", "chaos.traced_worker", *run.worker_args, "-n", f"chaos{n}@%h"),
                ready=" ready.",
            )
            run.workers.append(worker)
        for worker in run.workers:
            worker.wait_ready()
        for n in range(s.schedulers):
            run.proc(f"scheduler{n}", python("-m", "renewals", "scheduler"))
        say(
            f"{s.name}: {s.workers} worker(s) ({run.pool}, {' '.join(run.worker_args)}), "
            f"{s.schedulers} schedulers; chaos for {s.window_s:.0f} s"
        )
        run.chaos()
        say(f"{s.name}: waiting until quiet")
        result.figures["settle_s"] = round(run.wait_quiet(engine), 1)
        # Judged as of the quiet moment: work falls due while the stopped engine cannot
        # take it, and that is not the engine leaving it stuck.
        quiet_at = datetime.now(UTC)
        run.stop_engine()
        ledger = fetch_ledger(run.settings.faststar_base_url)
        emails_seen = read_deliveries(run.mail_log) if run.mail_log.exists() else []
        report = check(engine, ledger, now=quiet_at, settings=run.settings, emails=emails_seen)
        scanner = Scanner(needles(run.api_key, [run.webhook_secret]), emails)
        ours = [p.log for p in run.procs if p.name not in ("sandbox", "smtp")]
        scanner.scan_logs(ours)
        scanner.scan_task_log(run.task_log)
        scanner.scan_database(engine)
        result.check, result.hygiene = report, scanner.report
        result.figures.update(
            {
                "subscriptions": s.subscriptions,
                "workers": f"{s.workers} x {run.pool}",
                "kills": sum(run.kills.values()),
                "kills_pool_child": run.kills["pool_child"],
                "kills_worker": run.kills["worker"],
                "postgres_restarts": run.postgres.restarts if run.postgres else 0,
                "broker_flushes": (run.redis or run.rabbit).flushes  # type: ignore[union-attr]
                if (run.redis or run.rabbit)
                else 0,
                **report.figures(),
                "hygiene_leaks": scanner.report.total,
                "hygiene_items_scanned": sum(scanner.report.scanned.values()),
            }
        )
    finally:
        engine.dispose()


def to_json(result: Result) -> dict[str, Any]:
    return {
        "scenario": result.scenario.name,
        "ok": result.ok,
        "error": result.error,
        "figures": result.figures,
        "violations": result.check.to_json()["violations"] if result.check else [],
        "hygiene": dict(result.hygiene.leaks) if result.hygiene else {},
        "hygiene_examples": result.hygiene.examples if result.hygiene else [],
        "run_dir": str(result.run_dir) if result.run_dir else None,
    }


def dumps(results: list[Result]) -> str:
    return json.dumps([to_json(r) for r in results], indent=2)
