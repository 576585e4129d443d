"""Optional SQLite state file: write-through, so a restarted sandbox keeps its state.

Layout: one ``objects`` table for keyed records (customers, cards, setup intents, checkout
sessions, catalog) as JSON text, append-only ``charges`` and ``events`` tables, and the
completed idempotency records. WAL with ``synchronous=NORMAL`` keeps a commit to a page
write without an fsync, which is what lets write-through keep up with the charge hot path;
a sandbox may lose the last transactions on power loss, never on a process restart.

Everything runs on the server's event-loop thread; the store commits once per request.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from renewals.sandbox.responses import JSON, encode_json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS charges (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL
);
"""


@dataclass(slots=True)
class StoredResponse:
    """A completed request's response, kept for idempotent replay."""

    fingerprint: str
    status: int
    body: bytes


@dataclass(slots=True)
class Snapshot:
    """Everything a state file holds, as loaded at start-up."""

    objects: dict[str, list[JSON]] = field(default_factory=dict)
    charges: list[JSON] = field(default_factory=list)
    events: list[JSON] = field(default_factory=list)
    idempotency: dict[str, StoredResponse] = field(default_factory=dict)


class Persistence(Protocol):
    def load(self) -> Snapshot: ...
    def put_object(self, kind: str, object_id: str, row: JSON) -> None: ...
    def append_charge(self, charge: JSON) -> None: ...
    def append_event(self, event: JSON) -> None: ...
    def put_idempotency(self, key: str, response: StoredResponse) -> None: ...
    def commit(self) -> None: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


class MemoryOnly:
    """The default: nothing outlives the process."""

    def load(self) -> Snapshot:
        return Snapshot()

    def put_object(self, kind: str, object_id: str, row: JSON) -> None:
        pass

    def append_charge(self, charge: JSON) -> None:
        pass

    def append_event(self, event: JSON) -> None:
        pass

    def put_idempotency(self, key: str, response: StoredResponse) -> None:
        pass

    def commit(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteFile:
    """Write-through persistence to one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The app is built on one thread and served from the server thread (see testing.py);
        # only one thread touches the connection at a time.
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._dirty = False

    def load(self) -> Snapshot:
        snapshot = Snapshot()
        for kind, body in self._db.execute("SELECT kind, body FROM objects ORDER BY rowid"):
            snapshot.objects.setdefault(kind, []).append(json.loads(body))
        for (body,) in self._db.execute("SELECT body FROM charges ORDER BY seq"):
            snapshot.charges.append(json.loads(body))
        for (body,) in self._db.execute("SELECT body FROM events ORDER BY seq"):
            snapshot.events.append(json.loads(body))
        for key, fingerprint, status, body in self._db.execute(
            "SELECT key, fingerprint, status, body FROM idempotency"
        ):
            snapshot.idempotency[key] = StoredResponse(fingerprint, status, bytes(body))
        return snapshot

    def put_object(self, kind: str, object_id: str, row: JSON) -> None:
        self._db.execute(
            "INSERT INTO objects (kind, id, body) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            (kind, object_id, encode_json(row).decode("utf-8")),
        )
        self._dirty = True

    def append_charge(self, charge: JSON) -> None:
        self._db.execute(
            "INSERT INTO charges (body) VALUES (?)", (encode_json(charge).decode("utf-8"),)
        )
        self._dirty = True

    def append_event(self, event: JSON) -> None:
        self._db.execute(
            "INSERT INTO events (body) VALUES (?)", (encode_json(event).decode("utf-8"),)
        )
        self._dirty = True

    def put_idempotency(self, key: str, response: StoredResponse) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body) "
            "VALUES (?, ?, ?, ?)",
            (key, response.fingerprint, response.status, response.body),
        )
        self._dirty = True

    def commit(self) -> None:
        if self._dirty:
            self._db.commit()
            self._dirty = False

    def clear(self) -> None:
        for table in ("objects", "charges", "events", "idempotency"):
            self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        self._db.commit()
        self._dirty = False

    def close(self) -> None:
        self.commit()
        self._db.close()


def open_persistence(path: Path | None) -> Persistence:
    return MemoryOnly() if path is None else SqliteFile(path)
