"""The hygiene scan: no API key, webhook secret, card number or full customer email address
in any log line, task argument, outbox error or audit row of the run."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from renewals.models import AuditEvent, OutboxMessage
from renewals.models.db import unit_of_work
from renewals.sandbox.cards import TEST_CARDS


@dataclass(frozen=True, slots=True)
class Needle:
    kind: str  # api_key | webhook_secret | card_number | email
    text: str


@dataclass
class HygieneReport:
    scanned: Counter[str] = field(default_factory=Counter)
    """Items scanned per source (log lines, task arguments, outbox errors, audit rows)."""
    leaks: Counter[str] = field(default_factory=Counter)
    """Findings per ``source/kind``."""
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.leaks.values())

    @property
    def ok(self) -> bool:
        return self.total == 0


_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")


def needles(api_key: str, webhook_secrets: Sequence[str]) -> list[Needle]:
    found = [Needle("api_key", api_key)]
    found += [Needle("webhook_secret", s) for s in webhook_secrets]
    for number in TEST_CARDS:
        found.append(Needle("card_number", number))
        found.append(Needle("card_number", " ".join(number[i : i + 4] for i in range(0, 16, 4))))
    return found


class Scanner:
    """Looks for each needle verbatim, and for every email-shaped token among ``emails``."""

    def __init__(self, wanted: Sequence[Needle], emails: Iterable[str]) -> None:
        self.wanted = wanted
        self.emails = frozenset(emails)
        self.report = HygieneReport()

    def scan(self, source: str, text: str) -> None:
        self.report.scanned[source] += 1
        kinds = [needle.kind for needle in self.wanted if needle.text in text]
        if "@" in text:
            kinds += ["email" for token in _EMAIL.findall(text) if token in self.emails]
        for kind in kinds:
            self.report.leaks[f"{source}/{kind}"] += 1
            if len(self.report.examples) < 10:
                # Where it was found and what kind, never the value itself.
                self.report.examples.append(f"{source}: a {kind} ({len(text)}-character item)")

    def scan_logs(self, paths: Iterable[Path]) -> None:
        for path in paths:
            for line in path.read_text(errors="replace").splitlines():
                self.scan("log", line)

    def scan_task_log(self, path: Path) -> None:
        if path.exists():
            for line in path.read_text().splitlines():
                self.scan("task_args", line)

    def scan_database(self, engine: Engine) -> None:
        with unit_of_work(engine) as session:
            for error in session.scalars(
                select(OutboxMessage.last_error).where(OutboxMessage.last_error.is_not(None))
            ):
                self.scan("outbox_error", error or "")
            for actor, reason, details in session.execute(
                select(AuditEvent.actor, AuditEvent.reason, AuditEvent.details)
            ):
                self.scan("audit", json.dumps([actor, reason, details], default=str))
