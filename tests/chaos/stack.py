"""One long-lived production stack for the fault scenarios: PostgreSQL, Redis, the sandbox,
an SMTP server, a real scheduler sweeping every second and one real worker, all its crash
points wired to a token directory the scenario fills (see ``renewals.crashpoints``).

The worker uses the prefork pool on purpose: a crash point SIGKILLs the process it runs in,
which under prefork is one pool child; billiard forks a replacement, the worker's main
process and its broker connection live on, and ``task_reject_on_worker_lost`` puts the
killed task's message back. One worker can so take hundreds of crashes, and a scenario pays
for one start-up, not one per crash. (Under the threads pool a crash would kill the whole
worker.)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from renewals.checker import CheckReport, DeliveredEmail, ExecutedCharge, check
from renewals.config import Settings
from renewals.crashpoints import POINTS
from renewals.models.db import create_db_engine
from renewals.sandbox.testing import RunningSandbox
from tests.chaos.books import Figures, figures
from tests.support.celery_processes import Process, start_beat, start_worker
from tests.support.databases import truncate_all
from tests.support.factories import make_subscription_factory
from tests.support.redis_db import flush_keeping_claim
from tests.support.smtp import Mailbox, smtp_server

# The shortest lease the settings allow: a crash after a commit costs one lease of waiting.
LEASE_S = 10
SWEEP_INTERVAL_S = 1


def now() -> datetime:
    return datetime.now(UTC)


def report(row: dict[str, Any]) -> None:
    """A scenario's figures: printed (``-s`` shows them) and, for ``python -m
    chaos.crash_points``, appended to the JSON-lines file RENEWALS_CHAOS_FIGURES names."""
    line = json.dumps(row, default=str)
    print(line)
    target = os.environ.get("RENEWALS_CHAOS_FIGURES")
    if target:
        with Path(target).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


@dataclass
class CrashStack:
    database_url: str
    broker_url: str
    engine: Engine
    settings: Settings
    sandbox: RunningSandbox
    mailbox: Mailbox
    tokens: Path
    workdir: Path
    worker: Process | None = None

    def env(self, smtp_port: int, **extra: str) -> dict[str, str]:
        return {
            "RENEWALS_DATABASE_URL": self.database_url,
            "RENEWALS_BROKER_URL": self.broker_url,
            "RENEWALS_FASTSTAR_BASE_URL": self.sandbox.base_url,
            "RENEWALS_FASTSTAR_API_KEY": self.sandbox.api_key,
            "RENEWALS_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "RENEWALS_SWEEP_INTERVAL": str(SWEEP_INTERVAL_S),
            "RENEWALS_LEASE_SECONDS": str(LEASE_S),
            "RENEWALS_LOG_LEVEL": "INFO",
            # The janitor looks at an unknown outcome a second later and, keys trusted,
            # re-sends it under its own key: FastStar's replay settles it.
            "RENEWALS_UNKNOWN_RECHECK_DELAYS": "1s",
            "RENEWALS_TRUST_IDEMPOTENCY_KEYS": "true",
            "RENEWALS_CRASH_POINTS": ",".join(POINTS),
            "RENEWALS_CRASH_TOKENS": str(self.tokens),
            **extra,
        }

    # ------------------------------------------------------------------ crash tokens

    def arm(self, point: str, times: int) -> None:
        for _ in range(times):
            (self.tokens / f"{point}.{uuid.uuid4().hex}").touch()

    def armed(self, point: str | None = None) -> int:
        """Tokens not taken yet (of ``point``, or of every point)."""
        return len(list(self.tokens.glob(f"{point or '*'}.*")))

    def disarm(self) -> None:
        for token in self.tokens.glob("*.*"):
            token.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the scenario

    def subscribe(self, count: int, card: str = "success") -> list[int]:
        make = make_subscription_factory(self.engine, self.settings)
        return [make(card, renews_at=now()) for _ in range(count)]

    def figures(self, subscription_ids: list[int]) -> Figures:
        return figures(
            self.engine,
            subscription_ids,
            self.sandbox.charges(),
            list(self.mailbox.messages),
            now=now(),
        )

    def check(self) -> CheckReport:
        """``renewals check`` over the whole database against the sandbox's ledger and every
        email the SMTP server accepted."""
        return check(
            self.engine,
            [ExecutedCharge.from_json(c) for c in self.sandbox.charges()],
            now=now(),
            settings=self.settings,
            emails=[
                DeliveredEmail(str(m["X-Renewals-Key"]), str(m["Message-ID"]))
                for m in self.mailbox.messages
            ],
        )

    def crashes(self) -> int:
        """Crash points fired so far, as the worker's log tells (children's stderr)."""
        return self.worker.output().count("crash point ") if self.worker else 0


@contextmanager
def crash_stack(
    *,
    database_url: str,
    redis_url: str,
    sandbox: RunningSandbox,
    workdir: Path,
    concurrency: int = 2,
    **env: str,
) -> Iterator[CrashStack]:
    """The stack above on an emptied ``database_url``, killed on exit (nothing is left to
    finish gracefully); ``env`` adds or overrides worker settings."""
    truncate_all(database_url)
    flush_keeping_claim(redis_url)
    sandbox.reset()
    tokens = workdir / "crash-tokens"
    tokens.mkdir(parents=True)
    engine = create_db_engine(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        lease_seconds=LEASE_S,
        sweep_interval=SWEEP_INTERVAL_S,
    )
    stack = CrashStack(
        database_url, redis_url, engine, settings, sandbox, Mailbox(), tokens, workdir
    )
    processes: list[Process] = []
    try:
        with smtp_server(stack.mailbox) as port:
            worker_env = stack.env(port, **env)
            stack.worker = start_worker(
                worker_env, workdir / "worker", concurrency=concurrency, pool="prefork"
            )
            processes.append(stack.worker)
            processes.append(start_beat(worker_env, workdir / "beat"))
            yield stack
    finally:
        for process in processes:
            process.kill_group()
        engine.dispose()
