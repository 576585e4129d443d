"""The live view of ``renewals run``: a header saying what runs where, one row per
subscription naming its test card, the story so far, and the summary printed on exit.

A frame is drawn only when its text differs from the last one: on a terminal it replaces the
screen, elsewhere (a pipe, a log file) a new block is appended, so an idle demo prints
nothing at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from renewals.cli.tables import table
from renewals.services.demo import Backlog, DemoRow

# Every sandbox test card the demo seeds, with what an off-session charge on it does.
DEMO_CARDS = {
    "4242424242424242": "succeeds",
    "4000002760003184": "authentication required (402)",
    "4000000000000002": "declined",
    "4000000000009995": "insufficient funds",
    "4000000000000069": "expired card (hard decline)",
    "4000000000000119": "HTTP 500, nothing charged",
    "4000000000000341": "charged, response lost",
    "4000000000003220": "HTTP 500 after charging",
}
STORY_LINES = 8
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def card_label(last4: str | None) -> str:
    """``4000 0027 6000 3184  authentication required (402)`` for a demo card."""
    if last4 is None:
        return "saved card (details not fetched yet)"
    for number, behaviour in DEMO_CARDS.items():
        if number.endswith(last4):
            spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
            return f"{spaced}  {behaviour}"
    return f"**** **** **** {last4}"


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def shown_path(path: Path) -> str:
    """Relative to the working directory when it is inside it, as a newcomer would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def header(lines: Sequence[tuple[str, str]], title: str) -> str:
    width = max(len(name) for name, _ in lines)
    body = "\n".join(f"  {name.ljust(width)}  {value}" for name, value in lines)
    return f"{title}\n{body}\nCtrl-C stops everything."


def _when(at: datetime | None) -> str:
    return "" if at is None else f" {at:%Y-%m-%d %H:%MZ}"


def rows_table(rows: Sequence[DemoRow]) -> str:
    return table(
        ["sub", "card", "status", "renewal", "next"],
        [
            [
                r.subscription_id,
                card_label(r.last4),
                r.sub_status,
                r.renewal_status or "not due yet",
                f"{r.next_action}{_when(r.next_action_at)}" if r.next_action else None,
            ]
            for r in rows
        ],
    )


def backlog_line(backlog: Backlog) -> str:
    if not (backlog.renewals or backlog.emails or backlog.webhooks):
        return "nothing in progress"
    return (
        f"in progress: {backlog.renewals} renewal(s) to charge, {backlog.emails} email(s) to "
        f"send, {backlog.webhooks} webhook event(s) to process"
    )


@dataclass
class LiveView:
    """Draws frames on ``out``; ``tty`` decides between redrawing and appending."""

    out: TextIO
    tty: bool
    title: str
    story: list[str] = field(default_factory=list)
    _last: str | None = None
    _told: int = 0

    @classmethod
    def on_stdout(cls, title: str) -> LiveView:
        return cls(sys.stdout, sys.stdout.isatty(), title)

    def start(self) -> None:
        if not self.tty:
            self._write(self.title + "\n")

    def tell(self, line: str) -> None:
        self.story.append(f"{datetime.now(UTC):%H:%M:%S}  {line}")

    def show(self, rows: Sequence[DemoRow], backlog: Backlog) -> bool:
        """Draw the frame if it changed; returns whether it did."""
        frame = f"{rows_table(rows)}\n{backlog_line(backlog)}"
        if frame == self._last and self._told == len(self.story):
            return False
        self._last = frame
        if self.tty:
            story = "\n".join(f"  {line}" for line in self.story[-STORY_LINES:])
            self._write(f"{CLEAR_SCREEN}{self.title}\n\n{frame}\n\n{story}\n")
        else:
            told = "".join(f"  {line}\n" for line in self.story[self._told :])
            self._write(f"\n--- {datetime.now(UTC):%H:%M:%S}\n{frame}\n{told}")
        self._told = len(self.story)
        return True

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def summary(
    emails: Sequence[Path], earlier: int, folder: Path | None, commands: Sequence[tuple[str, str]]
) -> str:
    lines = ["", "emails written:" if emails else "no email was written in this run"]
    lines += [f"  {shown_path(path)}" for path in emails]
    if earlier and folder is not None:
        lines.append(f"  (and {earlier} by earlier runs, in {shown_path(folder)})")
    lines += ["", "try next:"]
    width = max(len(command) for command, _ in commands)
    lines += [f"  {command.ljust(width)}  # {why}" for command, why in commands]
    return "\n".join(lines)
