"""The local folders the configured paths need (the embedded default keeps all under var/).

Every process creates them at start-up, whichever process starts first: the webhook receiver
started alone must find the SQLite broker's folder as much as the worker does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url

from renewals.config import Settings


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (also kombu's ``sqla+sqlite:///``), else None."""
    if url.startswith("sqla+"):
        url = url.removeprefix("sqla+")
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def local_folders(settings: Settings) -> list[Path]:
    """The folders that must exist for the database, the broker and the mail directory."""
    folders = [
        path.parent
        for path in (_sqlite_file(settings.database_url), _sqlite_file(settings.broker_url))
        if path is not None
    ]
    mail = urlsplit(settings.mail_url)
    if mail.scheme == "file":
        folders.append(Path(unquote(mail.netloc + mail.path)))
    return list(dict.fromkeys(folders))


def create_local_folders(settings: Settings) -> list[Path]:
    """Create every folder of :func:`local_folders` that is missing; returns them all."""
    folders = local_folders(settings)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders
