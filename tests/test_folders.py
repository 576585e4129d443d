"""The folders each process creates at start-up for the configured local paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from renewals.config import Settings
from renewals.folders import create_local_folders, local_folders


def test_the_embedded_defaults_need_var_and_var_mail(tmp_path: Path) -> None:
    settings = Settings(
        database_url="sqlite:///var/renewals.db",
        broker_url="sqla+sqlite:///var/broker.db",
        mail_url=f"file://{tmp_path}/var/mail",
    )
    assert local_folders(settings) == [Path("var"), tmp_path / "var" / "mail"]


def test_servers_and_absolute_paths(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://u@db/renewals",
        broker_url=f"sqla+sqlite:///{tmp_path}/broker/b.db",
        mail_url="smtp://mail.example.com:587",
    )
    assert create_local_folders(settings) == [tmp_path / "broker"]
    assert (tmp_path / "broker").is_dir()
    redis = Settings(broker_url="redis://:pw@redis:6379/0", mail_url="console://")
    assert local_folders(redis.model_copy(update={"database_url": "sqlite:///:memory:"})) == []


def test_any_process_started_first_creates_them(tmp_path: Path) -> None:
    # The Procfile's release step on a fresh working directory, all defaults: it makes the
    # mail folder too, which nothing in it writes to.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
    done = subprocess.run(
        [sys.executable, "-m", "renewals", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "renewals.db").is_file()
    assert (tmp_path / "var" / "mail").is_dir()
