"""``Idempotency-Key`` handling for POSTs (our Part B assumption; FastStar documents none).

A key first seen is marked in flight; when its request finishes the response (status and
exact body bytes) is stored. Later requests with the key:

* same method, path and body  -> the stored response is replayed byte for byte;
* anything else               -> 409;
* while the first is in flight -> 409, so a client retrying a slow request concurrently can
  never execute it twice.

Keys share one namespace across API keys: the sandbox models a single merchant.
"""

from __future__ import annotations

import hashlib
import json

from renewals.sandbox.persistence import Persistence, StoredResponse
from renewals.sandbox.responses import ApiError, encode_json


def fingerprint(method: str, path: str, body: object) -> str:
    """Identity of a request: method, path and the body with its keys sorted.

    Sorting keys means a client that re-serialises the same JSON differently still replays.
    """
    canonical = encode_json(body) if not isinstance(body, dict) else _sorted_json(body)
    digest = hashlib.sha256(canonical).hexdigest()
    return f"{method} {path} {digest}"


def _sorted_json(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


class IdempotencyStore:
    def __init__(self, persistence: Persistence) -> None:
        self._persistence = persistence
        self._done: dict[str, StoredResponse] = {}
        self._in_flight: set[str] = set()

    def load(self, records: dict[str, StoredResponse]) -> None:
        self._done.update(records)

    def clear(self) -> None:
        self._done.clear()
        self._in_flight.clear()

    def begin(self, key: str, request_fingerprint: str) -> StoredResponse | None:
        """The response to replay, or None after marking the key in flight; 409 on conflict."""
        if key in self._in_flight:
            raise ApiError(409, "A request with this Idempotency-Key is still in progress")
        stored = self._done.get(key)
        if stored is None:
            self._in_flight.add(key)
            return None
        if stored.fingerprint != request_fingerprint:
            raise ApiError(409, "This Idempotency-Key was already used with a different request")
        return stored

    def finish(self, key: str, response: StoredResponse) -> None:
        self._in_flight.discard(key)
        self._done[key] = response
        self._persistence.put_idempotency(key, response)

    def abandon(self, key: str) -> None:
        """Forget an in-flight key whose request crashed, so a retry can run it."""
        self._in_flight.discard(key)
