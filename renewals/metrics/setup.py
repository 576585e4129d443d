"""Choosing the multiprocess folder before prometheus_client creates any metric.

Every process on a host (worker pool children, the scheduler, the web process) writes its
counters to files in one folder, and whichever process serves ``/metrics`` merges them. The
folder must be empty when the host's processes start, and must never be emptied while any
of them runs: a process keeps writing to the files it opened, so deleting them loses its
counts from then on, silently. Hence the default: ``RENEWALS_METRICS_DIR`` holds one subfolder
per boot of the machine (``boot-<kernel boot id>``), so a reboot starts from an empty folder
without anybody deleting anything in use, and the folders of earlier boots, which no running
process can hold open, are removed. ``PROMETHEUS_MULTIPROC_DIR``, when set by the operator,
is used as it is; emptying it at host start is then theirs to do (docs/metrics.md).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from renewals.config import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:  # not Linux: one folder for every boot
        return None


def multiprocess_dir(settings: Settings) -> Path | None:
    """The folder this host's processes share, or None to keep metrics per process."""
    explicit = os.environ.get(ENV)
    if explicit:
        return Path(explicit)
    if not settings.metrics_dir:
        return None
    base = Path(settings.metrics_dir).absolute()
    boot = boot_id()
    return base / f"boot-{boot}" if boot else base


def prepare(settings: Settings) -> Path | None:
    """Point prometheus_client at this host's folder (creating it); call it at a process's
    start, before any metric exists. Child processes inherit the choice."""
    folder = multiprocess_dir(settings)
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if not os.environ.get(ENV):
        _remove_earlier_boots(folder)
        os.environ[ENV] = str(folder)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: choose again
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return folder


def _remove_earlier_boots(folder: Path) -> None:
    if not folder.name.startswith("boot-"):
        return
    for other in folder.parent.glob("boot-*"):
        if other != folder and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
