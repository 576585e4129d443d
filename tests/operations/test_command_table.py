"""The README's table of operator commands is the registry's: same task names, same JSON
arguments (required ones without ``?``), and the worker registers every task."""

from __future__ import annotations

import re
from pathlib import Path

from renewals.services.commands import COMMANDS
from renewals.worker.names import COMMAND_TASK_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `[^`]+` \| `(renewals\.ops\.\w+)` \| `(\{.*\})` \|$")


def _documented() -> dict[str, dict[str, bool]]:
    rows: dict[str, dict[str, bool]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            keys = re.findall(r'"(\w+)"(\??):', match.group(2))
            rows[match.group(1)] = {key: not optional for key, optional in keys}
    return rows


def test_the_readme_documents_every_command_task_and_its_arguments() -> None:
    expected = {
        COMMAND_TASK_NAMES[name]: {key: f.required for key, f in command.fields.items()}
        for name, command in COMMANDS.items()
    }
    assert _documented() == expected


def test_the_worker_registers_a_task_per_command() -> None:
    from renewals.worker.celery_app import app
    from renewals.worker.tasks import COMMAND_TASKS

    assert {task.name for task in COMMAND_TASKS.values()} == set(COMMAND_TASK_NAMES.values())
    assert set(COMMAND_TASK_NAMES.values()) <= set(app.tasks)
