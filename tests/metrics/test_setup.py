"""Where the host's processes put their metric files (renewals.metrics.setup)."""

from __future__ import annotations

from pathlib import Path

import prometheus_client.values
import pytest

from renewals.config import Settings
from renewals.metrics import setup


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No folder chosen yet, and whatever prepare() switches is put back afterwards."""
    monkeypatch.setenv(setup.ENV, "")  # recorded, so that teardown removes what prepare() sets
    monkeypatch.delenv(setup.ENV)
    monkeypatch.setattr(prometheus_client.values, "ValueClass", prometheus_client.values.ValueClass)
    boot = tmp_path / "boot_id"
    boot.write_text("1111-2222\n")
    monkeypatch.setattr(setup, "BOOT_ID", boot)
    return tmp_path


def test_each_boot_gets_its_own_folder_and_earlier_boots_are_removed(isolated: Path) -> None:
    base = isolated / "metrics"
    earlier = base / "boot-0000-aaaa"
    earlier.mkdir(parents=True)
    (earlier / "counter_123.db").write_bytes(b"old")
    folder = setup.prepare(Settings(metrics_dir=str(base)))
    assert folder == base / "boot-1111-2222"
    assert folder.is_dir()
    assert setup.os.environ[setup.ENV] == str(folder)
    assert not earlier.exists()


def test_an_explicit_prometheus_multiproc_dir_is_used_as_it_is(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = isolated / "mine"
    monkeypatch.setenv(setup.ENV, str(mine))
    (isolated / "metrics" / "boot-0000").mkdir(parents=True)
    assert setup.prepare(Settings(metrics_dir=str(isolated / "metrics"))) == mine
    assert mine.is_dir()
    assert (isolated / "metrics" / "boot-0000").is_dir()  # not ours to remove


def test_an_empty_metrics_dir_keeps_metrics_per_process(isolated: Path) -> None:
    assert setup.prepare(Settings(metrics_dir="")) is None
    assert setup.ENV not in setup.os.environ
